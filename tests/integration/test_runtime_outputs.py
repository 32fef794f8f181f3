"""Outputs other than a healthy MQTT link: the last will, the serial and stdout sinks, exclusive ports."""

from __future__ import annotations

import json
import os
import select
import signal as signals
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from model_factory import build_model
from runtime_helpers import Recorder, run_args, spawn  # noqa: F401 (spawn is a fixture)

from edge_runtime import payload
from edge_runtime.serial_port import Port
from firmware_bridge.framing import cobs_decode
from firmware_bridge.recordings import load_csv, save_csv

pytestmark = pytest.mark.integration
W, HOP = 128, 64
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hapt-user09.csv"


def short_recording(tmp_path: Path, n: int = 640) -> Path:
    rec = load_csv(SAMPLE)
    return save_csv(type(rec)(name="short", t=rec.t[:n], samples=rec.samples[:n], rate_hz=50.0), tmp_path / "short.csv")


def replay_reading(fd: int, *args: str) -> bytes:
    """Run ``imu-anon replay ARGS`` while reading what it writes to the pty (as a consumer would)."""
    data = bytearray()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                data.extend(os.read(fd, 65536))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = run_cli("replay", *args, timeout=60)
    time.sleep(0.3)
    done.set()
    reader.join(5)
    assert result.returncode == 0, result.stderr
    return bytes(data)


def test_a_vanished_gateway_is_announced_offline_by_its_last_will(tmp_path: Path, broker, spawn) -> None:
    with Recorder(broker.port, "imu/gateway/#") as status:
        runtime = spawn(*run_args(build_model(tmp_path / "anon.onnx"), tmp_path, sources=["loop:idle"],
                                  sinks=[f"{broker.url}/imu/anon/{{stream}}"]))
        runtime.wait_for_line("mqtt-out: connected")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not status.messages:  # the retained "online"
            time.sleep(0.05)
        runtime.proc.send_signal(signals.SIGKILL)  # no goodbye: only the broker can tell
        runtime.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(status.messages) < 2:
            time.sleep(0.05)
    states = [json.loads(p)["state"] for _, p, _ in status.messages]
    assert states == ["online", "offline"]


def test_the_serial_sink_writes_json_lines_and_cobs_framed_binary(tmp_path: Path, pty_pair) -> None:
    master, path = pty_pair
    csv = short_recording(tmp_path)
    model = str(build_model(tmp_path / "anon.onnx"))
    key = str(tmp_path / "key")
    text = replay_reading(master, str(csv), "--model", model, "--sink", f"serial://{path}?baud=115200&format=json",
                          "--privacy-secret-file", key)
    rows = [json.loads(line) for line in text.decode().splitlines()]
    assert len(rows) == (640 - W) // HOP + 1 and np.asarray(rows[0]["values"]).shape == (2, W)

    wire = replay_reading(master, str(csv), "--model", model, "--sink", f"serial://{path}?format=binary",
                          "--privacy-secret-file", key)
    frames = [f for f in wire.split(b"\x00") if f]
    windows = [payload.decode(cobs_decode(f)) for f in frames]
    assert [w["index"] for w in windows] == list(range((640 - W) // HOP + 1))
    np.testing.assert_allclose(windows[3]["values"], rows[3]["values"], atol=1e-6)


def test_stdout_carries_json_lines_and_the_summary_moves_to_stderr(tmp_path: Path) -> None:
    result = run_cli("replay", str(short_recording(tmp_path)), "--model", str(build_model(tmp_path / "anon.onnx")),
                     "--sink", "stdout:", "--privacy-secret-file", str(tmp_path / "key"), timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == (640 - W) // HOP + 1 and "windows 9, messages 9" in result.stderr


def test_a_consumer_that_stops_reading_does_not_hang_the_runtime(tmp_path: Path, pty_pair) -> None:
    _, path = pty_pair  # nobody reads the master: the pty fills up after a few kB
    result = run_cli("replay", str(short_recording(tmp_path, 3000)), "--model", str(build_model(tmp_path / "a.onnx")),
                     "--sink", f"serial://{path}", "--privacy-secret-file", str(tmp_path / "key"), "--json",
                     timeout=60)
    assert result.returncode == 0, result.stderr
    counters = json.loads(result.stdout)["counters"]
    assert counters["serial_out_dropped"] > 0 and counters["serial_write_timeouts"] > 0
    assert json.loads(result.stdout)["windows"] == (3000 - W) // HOP + 1


def test_a_port_is_opened_exclusively(pty_pair, caplog: pytest.LogCaptureFixture) -> None:
    _, path = pty_pair
    first, second = Port(path, 115200, role="first"), Port(path, 115200, role="second")
    try:
        assert first.read(0.01) == b"" and first.is_open
        assert second.read(0.01) == b"" and not second.is_open
        assert "Could not exclusively lock" in caplog.text
    finally:
        first.close()
        second.close()
