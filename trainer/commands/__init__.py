"""Sub-commands of the trainer (``imu-anon train``, ``imu-anon evaluate``)."""
