"""``imu-anon bench``: how many wearables one core anonymises, with what delay, in how much memory.

Absolute times mean little on a shared or throttled machine, so every figure comes with a
ratio to the same core's own fp32 matrix-product peak, measured in the same run:

- ``device``     what the figures were measured on (CPU, flags, onnxruntime, threads);
- ``peak``       single-thread fp32 matmul GFLOP/s, in a subprocess with BLAS pinned to 1 thread;
- ``inference``  latency percentiles and throughput per batch size of each model variant;
- ``torch_eager`` the torch reference, run as a subprocess only when torch is installed;
- ``capacity``   one step: simulated 50 Hz wearables through the real pipeline for a fixed time;
- ``search``     the largest fleet that passes, a failing size run again before it counts;
- ``fleet``, ``mqtt_fleet``, ``broker``  the simulated wearables, their MQTT publisher, a local Mosquitto;
- ``footprint``  cold start and peak RSS of a fresh runtime process, and its import graph;
- ``report``     the result document (JSON) and the printed table.

Importing this package loads nothing heavier than numpy.
"""
