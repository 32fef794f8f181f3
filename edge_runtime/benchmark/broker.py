"""A throwaway Mosquitto on a free loopback port, for the capacity run's publish stage.

On a gateway the broker is a separate service on another core, so it is pinned away from
the core being measured where the machine has more than one; its cost is not the runtime's.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edge_runtime.errors import EdgeRuntimeError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


class BrokerError(EdgeRuntimeError):
    """The benchmark's own broker could not be started."""


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """``with LocalBroker(cpus=[0]) as broker: broker.url`` -> ``mqtt://127.0.0.1:PORT``.

    ``cpus``: where the broker may run (it inherits the bench's own pinning otherwise)."""

    def __init__(self, cpus: list[int] | None = None) -> None:
        self.cpus = list(cpus or [])
        self.port = 0
        self.pinned_to: list[int] | None = None
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalBroker":
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed: install it (apt-get install mosquitto), point the "
                              "bench at a broker with --broker mqtt://HOST:PORT, or use --sink null")
        self._tmp = tempfile.TemporaryDirectory(prefix="imu-anon-bench-broker-")
        self.port = _free_port()
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"log_dest file {Path(self._tmp.name) / 'mosquitto.log'}\nmax_queued_messages 100000\n"
                        # as edge_runtime/deploy/mosquitto.conf: the Receive Maximum the gateway gets
                        "max_inflight_messages 100\n")
        self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._pin()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.__exit__()
                raise BrokerError(f"mosquitto exited with status {self._proc.returncode}; try --sink null")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.info("benchmark broker on %s (pid %d, cpus %s)", self.url, self._proc.pid, self.pinned_to)
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT_S:.0f} s")

    def _pin(self) -> None:
        if not self.cpus or not hasattr(os, "sched_setaffinity") or self._proc is None:
            return
        try:
            os.sched_setaffinity(self._proc.pid, set(self.cpus))
            self.pinned_to = self.cpus
        except OSError as exc:
            log.debug("cannot pin the broker to %s: %s", self.cpus, exc)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
