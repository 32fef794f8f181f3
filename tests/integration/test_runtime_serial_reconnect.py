"""The serial cable goes away and the adapter comes back under another tty: the runtime follows it."""

from __future__ import annotations

import json
import os
import time
import tty
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from model_factory import build_model
from runtime_helpers import frames_for, run_args, signal, spawn  # noqa: F401 (spawn is a fixture)

pytestmark = pytest.mark.integration
W, HOP = 128, 64
DEV = 0x00DE00AD00BE00EF


def metric(port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"imu_anon_{name}_total "):
                return int(line.split()[1])
    return 0


def wait_metric(port: int, name: str, value: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(port, name) >= value:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {value} within {timeout}s (now {metric(port, name)})")


def write(fd: int, frames: list[bytes]) -> None:
    data = b"".join(frames)
    for start in range(0, len(data), 512):
        os.write(fd, data[start:start + 512])
        time.sleep(0.002)


def test_a_re_enumerated_adapter_is_found_again_by_its_stable_name(tmp_path: Path, pty_pair, spawn) -> None:
    master, first_tty = pty_pair
    link = tmp_path / "by-id" / "usb-imu-wearable-if00"  # what udev's /dev/serial/by-id gives
    link.parent.mkdir()
    link.symlink_to(first_tty)
    port = free_port()
    out = tmp_path / "out.jsonl"
    runtime = spawn(*run_args(build_model(tmp_path / "anon.onnx"), tmp_path, sources=[f"serial://{link}"],
                              sinks=[f"file:{out}"], extra=("--metrics-prometheus-port", str(port))))
    runtime.wait_for_line(f"opened {link}")
    samples = signal(1280, seed=9)
    per_part = (640 - W) // HOP + 1
    write(master, frames_for(samples[:640], DEV))
    wait_metric(port, "windows_anonymised", per_part)

    os.close(master)  # unplugged: the tty disappears
    runtime.wait_for_line("lost")
    new_master, new_slave = os.openpty()
    tty.setraw(new_slave)
    try:
        replacement = tmp_path / "by-id" / "tmp-link"
        replacement.symlink_to(os.ttyname(new_slave))
        os.replace(replacement, link)  # plugged in again, as another ttyN
        runtime.wait_for_line(f"reopened {link}")
        # The device kept counting while unplugged: its sequence numbers and clock jumped.
        write(new_master, frames_for(samples[640:], DEV, seq0=500, first_index=3000))
        wait_metric(port, "windows_anonymised", 2 * per_part)
        assert metric(port, "serial_lost") == 1 and metric(port, "serial_reconnects") == 1
        assert runtime.terminate() == 0
    finally:
        os.close(new_master)
        os.close(new_slave)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * per_part
    assert [r["segment"] for r in rows] == [0] * per_part + [1] * per_part
    assert rows[per_part]["t0"] == pytest.approx(3000 / 50)


def test_csv_lines_on_a_serial_port_are_anonymised_too(tmp_path: Path, pty_pair, spawn) -> None:
    master, path = pty_pair
    out = tmp_path / "out.jsonl"
    runtime = spawn(*run_args(build_model(tmp_path / "anon.onnx"), tmp_path,
                              sources=[f"serial://{path}?format=csv&rate=50&device=proto&gyro=deg/s"],
                              sinks=[f"file:{out}"], extra=("--metrics-prometheus-port", str(port := free_port()))))
    runtime.wait_for_line(f"opened {path}")
    samples = signal(400, seed=4)
    lines = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + "".join(
        ",".join(f"{v:.5f}" for v in np.concatenate([row[:3], np.degrees(row[3:])])) + "\n" for row in samples)
    os.write(master, lines.encode()[:3000])
    time.sleep(0.05)
    os.write(master, lines.encode()[3000:])
    wait_metric(port, "windows_anonymised", (400 - W) // HOP + 1)
    assert runtime.terminate() == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == (400 - W) // HOP + 1 and len({r["stream"] for r in rows}) == 1
    assert "proto" not in out.read_text()
