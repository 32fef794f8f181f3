"""Fixtures for real parts: a Mosquitto broker on a free loopback port, pty pairs.

Everything binds to 127.0.0.1 only; every wait is bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.benchmark.broker import Mosquitto as Broker
from edge_runtime.benchmark.broker import free_port  # noqa: F401 (the tests' import of it)

REPO = Path(__file__).resolve().parent.parent
HAPT = REPO / "data" / "hapt.npz"


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
