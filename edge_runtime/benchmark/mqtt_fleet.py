"""The fleet over MQTT: the capacity run's wearables publishing to the broker, as WiFi wearables do.

With ``--source mqtt`` the gateway reads the fleet through its own MQTT source (the URL a
deployment would give it), so the reader's cost is the real one. The frames are published by a
separate process pinned to the broker's core(s): the publishing wearables are not the gateway's
work. It plays the same :func:`~edge_runtime.benchmark.fleet.schedule` the in-process feeder
plays, from a plan file the bench writes (numpy arrays, no pickle), every ``READ_TICK_S``
publishing what has fallen due, at QoS 1 to ``imu-anon-bench-in/<device id>/raw``. The start
time is an absolute ``time.monotonic()`` (one system-wide clock), so the bench knows when each
frame was due and measures latency from there, broker and reader included.
"""

from __future__ import annotations

import json
import logging
import bisect
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import mqtt_link, mqtt_wire
from edge_runtime.benchmark.fleet import READ_TICK_S, Schedule, WearableFrames
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.mqtt_link import MqttSettings

log = logging.getLogger(__name__)

TOPIC = "imu-anon-bench-in/{device:016x}/raw"
PATTERN = "imu-anon-bench-in/+/raw"
CLOSE_TIMEOUT_S = 5.0
LEAD_S = 1.5  # from starting the publisher to its first frame: an interpreter start, the plan read, CONNECT
OVERRUN_S = 30.0  # a publisher this far behind its schedule gives up (the step has failed anyway)


class PublisherError(EdgeRuntimeError):
    """The fleet's publishing process could not run."""


def write_plan(path: Path, plan: Schedule, wearables: list[WearableFrames]) -> None:
    """The schedule as flat arrays: due offsets, owners, frame lengths, the frames' bytes."""
    blob = b"".join(plan.frames)
    np.savez(path, due=np.asarray(plan.due, dtype=np.float64), owner=np.asarray(plan.owner, dtype=np.int32),
             length=np.asarray([len(f) for f in plan.frames], dtype=np.int32),
             blob=np.frombuffer(blob, dtype=np.uint8), device=np.asarray([w.device_id for w in wearables], dtype=np.uint64))


class FleetPublisher:
    """``with FleetPublisher(plan_file, port, cpus) as pub: pub.start(t0); ...; pub.wait()``."""

    def __init__(self, plan_file: Path, host: str, port: int, cpus: list[int]) -> None:
        self.plan_file, self.host, self.port, self.cpus = plan_file, host, port, cpus
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "FleetPublisher":
        return self

    def start(self, t0: float) -> None:
        """Publishing begins at ``t0`` (``time.monotonic()``); the interpreter starts meanwhile."""
        cmd = [sys.executable, "-m", "edge_runtime.benchmark.mqtt_fleet", str(self.plan_file), self.host, str(self.port),
               repr(t0), ",".join(map(str, self.cpus))]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float) -> dict[str, Any]:
        """The publisher's account: frames published, how late the latest was."""
        if self._proc is None:
            raise PublisherError("the fleet publisher was never started")
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, err = self._proc.communicate()
            raise PublisherError(f"the fleet publisher did not finish within {timeout:.0f} s") from None
        if self._proc.returncode:
            tail = (err or "").strip().splitlines()[-1:] or ["no message"]
            raise PublisherError(f"the fleet publisher failed (status {self._proc.returncode}): {tail[0]}")
        return json.loads(out.strip().splitlines()[-1])

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)


def _connect(host: str, port: int) -> socket.socket:
    """A non-blocking connection to the broker, CONNACK received (MQTT 3.1.1, no will)."""
    connect = mqtt_wire.connect(client_id=f"imu-anon-bench-fleet-{os.getpid()}", protocol="3.1.1", keepalive_s=60)
    try:
        return mqtt_link.dial(MqttSettings(host=host, port=port, protocol="3.1.1"), None, connect, b"", v5=False).sock
    except (mqtt_link.RefusedError, mqtt_wire.MqttProtocolError) as exc:
        raise PublisherError(f"the broker would not take the fleet publisher: {exc}") from None


def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            _discard_acks(sock)
            time.sleep(0.0005)


def _discard_acks(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass


def _close(sock: socket.socket) -> None:
    """Half-close, then read to the broker's end: closing with its acknowledgements unread would
    reset the connection, and the broker could lose the last frames it had not read yet."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(CLOSE_TIMEOUT_S)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


def play(plan_file: Path, host: str, port: int, t0: float) -> dict[str, Any]:
    with np.load(plan_file) as data:
        due, owner, length = data["due"].tolist(), data["owner"].tolist(), data["length"]
        blob, devices = data["blob"].tobytes(), data["device"].tolist()
    ends = np.cumsum(length).tolist()
    starts = [0, *ends[:-1]]
    make = mqtt_wire.header_maker(1, v5=False)
    topics = [mqtt_wire.topic_field(TOPIC.format(device=d)) for d in devices]
    packets = []
    pid = 0
    for w, a, b in zip(owner, starts, ends):
        pid = pid % 65535 + 1
        packets.append(make(topics[w], b - a, pid) + blob[a:b])
    sock = _connect(host, port)
    total, i, lateness = len(packets), 0, 0.0
    while i < total:
        now = time.monotonic()
        if now - t0 - due[-1] > OVERRUN_S:
            raise PublisherError(f"{OVERRUN_S:.0f} s behind the schedule: the broker is not taking frames")
        j = bisect.bisect_right(due, now - t0, lo=i)
        if j > i:
            _send(sock, b"".join(packets[i:j]))
            lateness = max(lateness, now - (t0 + due[i]))
            i = j
        _discard_acks(sock)
        if i < total:
            time.sleep(max(READ_TICK_S, min(0.05, t0 + due[i] - time.monotonic())))
    _send(sock, mqtt_wire.disconnect(v5=False))
    _close(sock)
    return {"published": total, "max_lateness_ms": round(lateness * 1e3, 2)}


def main(argv: list[str]) -> int:
    plan_file, host, port, t0, cpus = Path(argv[0]), argv[1], int(argv[2]), float(argv[3]), argv[4]
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
        except OSError:
            pass
    try:
        print(json.dumps(play(plan_file, host, port, t0)))
    except (OSError, PublisherError) as exc:
        print(f"fleet publisher: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
