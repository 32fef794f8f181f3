"""Fixtures for real parts: a Mosquitto broker on a free loopback port, pty pairs.

Everything binds to 127.0.0.1 only; every wait is bounded in time.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HAPT = REPO / "data" / "hapt.npz"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        pytest.fail("mosquitto is not installed: run scripts/setup.sh (it installs it with apt-get)")
    return found


class Broker:
    """A real mosquitto process on 127.0.0.1:port that a test can stop and start again."""

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        # mosquitto started as root drops to the 'mosquitto' user, which cannot write into
        # pytest's 0700 temp folders; keep it as the current user.
        user = f"user {getpass.getuser()}\n"
        self.config.write_text(
            f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n{extra_config}"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ready_port(self) -> int:
        """The listener that, once it accepts connections, means the broker is up."""
        return self.port

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.workdir / "mosquitto.log"
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: "
                                   f"{log.read_text() if log.is_file() else 'no log written'}")
            try:
                with socket.create_connection((self.host, self.ready_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.ready_port} within {timeout}s")

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    """A fresh broker per test (tests that kill it must not disturb others)."""
    with Broker(tmp_path) as b:
        yield b


@pytest.fixture
def pty_pair():
    """A real pseudo-terminal pair: (master fd, slave device path)."""
    import pty
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="session")
def hapt_path() -> Path:
    assert HAPT.is_file(), f"bundled data missing: {HAPT}"
    return HAPT


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``imu-anon ARGS`` in a subprocess with this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "imu_anon", *args],
        capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", REPO), **kw,
    )
