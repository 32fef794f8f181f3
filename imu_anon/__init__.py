"""imu-anon: the command line and the error root shared by every package."""

__version__ = "0.1.0"
