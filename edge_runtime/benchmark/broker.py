"""A throwaway Mosquitto on a free loopback port: the capacity run's broker, and the tests'.

On a gateway the broker is a separate service on another core, so the bench pins it away
from the core being measured where the machine has more than one; its cost is not the
runtime's. Tests that restart a broker under a running gateway use :class:`Mosquitto`
directly: ``stop()`` and ``start()`` again keep its port and configuration.
"""

from __future__ import annotations

import getpass
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
HOST = "127.0.0.1"
# As edge_runtime/deploy/mosquitto.conf: the Receive Maximum the gateway gets, and room for a
# fleet's backlog while the measured core catches up.
BENCH_CONFIG = "max_queued_messages 100000\nmax_inflight_messages 100\n"


class BrokerError(EdgeRuntimeError):
    """A local Mosquitto could not be started."""


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process listening on ``HOST:port``, configured and logging in ``workdir``.

    ``extra_config``: lines added to the configuration; ``cpus``: where the broker may run (it
    inherits the caller's pinning otherwise). A subclass with another configuration overrides
    :meth:`configuration` (and :attr:`ready_port` when clients use another listener)."""

    host = HOST

    def __init__(self, workdir: str | Path, extra_config: str = "", *, cpus: list[int] | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.cpus = list(cpus or [])
        self.pinned_to: list[int] | None = None
        self.proc: subprocess.Popen | None = None
        self.config = self.workdir / "mosquitto.conf"
        self.config.write_text(self.configuration(extra_config))

    def configuration(self, extra_config: str) -> str:
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write into a
        # private temporary folder: it stays the current user.
        return (f"user {getpass.getuser()}\nlistener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
                f"log_dest file {self.workdir / 'mosquitto.log'}\n{extra_config}")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ready_port(self) -> int:
        """The listener that, once it accepts connections, means the broker is up."""
        return self.port

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed: run scripts/setup.sh, or apt-get install mosquitto")
        with open(self.workdir / "mosquitto.err", "ab") as err:  # where it says what is wrong with a configuration
            self.proc = subprocess.Popen([binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=err)
        self._pin()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BrokerError(f"mosquitto exited with status {code}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.ready_port), timeout=0.2):
                    log.info("mosquitto on %s (pid %d, cpus %s)", self.url, self.proc.pid, self.pinned_to)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.ready_port} within {timeout:.0f} s: "
                          f"{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of what mosquitto wrote to its log and its standard error."""
        said = [path.read_text(errors="replace")[-chars:].strip()
                for path in (self.workdir / "mosquitto.log", self.workdir / "mosquitto.err") if path.is_file()]
        return " | ".join(text for text in said if text) or "it wrote nothing"

    def _pin(self) -> None:
        if not self.cpus or not hasattr(os, "sched_setaffinity") or self.proc is None:
            return
        try:
            os.sched_setaffinity(self.proc.pid, set(self.cpus))
            self.pinned_to = self.cpus
        except OSError as exc:
            log.debug("cannot pin the broker to %s: %s", self.cpus, exc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> "Mosquitto":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalBroker:
    """``with LocalBroker(cpus=[0]) as broker: broker.url`` -> ``mqtt://127.0.0.1:PORT``: the
    bench's broker, in a temporary folder of its own."""

    def __init__(self, cpus: list[int] | None = None) -> None:
        self.cpus = list(cpus or [])
        self._broker: Mosquitto | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return self._running().url

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def pinned_to(self) -> list[int] | None:
        return self._running().pinned_to

    def _running(self) -> Mosquitto:
        if self._broker is None:
            raise BrokerError("the bench's broker is used outside its 'with' block")
        return self._broker

    def __enter__(self) -> "LocalBroker":
        self._tmp = tempfile.TemporaryDirectory(prefix="imu-anon-bench-broker-")
        try:
            self._broker = Mosquitto(self._tmp.name, BENCH_CONFIG, cpus=self.cpus)
            self._broker.start()
        except BrokerError as exc:
            self.__exit__()
            raise BrokerError(f"{exc}; or point the bench at a broker with --broker mqtt://HOST:PORT, "
                              "or use --sink null") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
