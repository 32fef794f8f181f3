"""serial -> runtime -> broker -> subscriber, with a real pty, a real mosquitto, a real process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from model_factory import build_model, reference_output
from runtime_helpers import (Recorder, spawn, as_decoded, device_name, final_counters, frames_for, pseudonym_for,
                             run_args, signal as imu_signal)

from edge_runtime.windowing import sliding_windows
from firmware_bridge.ports import FdOutput
from firmware_bridge.recordings import load_csv, read_frame_file, save_frames
from firmware_bridge.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.integration
W, HOP = 128, 64
DEV_A, DEV_B = 0x0A0A0A0A0A0A0A0A, 0x0B0B0B0B0B0B0B0B
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hapt-user09.csv"


def windows_of(samples: np.ndarray) -> np.ndarray:
    return reference_output(np.ascontiguousarray(sliding_windows(samples, W, HOP)))


def write_all(fd: int, data: bytes, chunk: int = 512) -> None:
    for start in range(0, len(data), chunk):
        view = memoryview(data)[start:start + chunk]
        while view:
            view = view[os.write(fd, view):]
        time.sleep(0.002)  # a UART's pace, roughly: the reader takes it in pieces


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return build_model(tmp_path / "anon.onnx")


def start_runtime(spawn, model: Path, tmp_path: Path, port_path: str, broker, *extra: str):
    runtime = spawn(*run_args(model, tmp_path, sources=[f"serial://{port_path}"],
                                sinks=[f"{broker.url}/imu/anon/{{stream}}"], extra=extra))
    runtime.wait_for_line(f"opened {port_path}")
    runtime.wait_for_line("mqtt-out: connected")
    return runtime


def test_the_device_simulator_over_a_pty_reaches_a_subscriber_as_anonymised_windows(
        tmp_path: Path, model: Path, broker, pty_pair, spawn) -> None:
    master, path = pty_pair
    recording = load_csv(SAMPLE)
    with Recorder(broker.port) as recorder:
        runtime = start_runtime(spawn, model, tmp_path, path, broker)
        frames: list[bytes] = []
        out = FdOutput(master, timeout_s=2.0)

        def send(frame: bytes) -> bool:
            frames.append(frame)
            return out.send(frame)

        device_id = 0x494D55414E4F4E09
        config = SimulatorConfig(device_id=device_id, speed=25.0, duration_s=30.0)
        summary = Simulator(recording, config, send).run()
        assert summary.tx_dropped == 0 and summary.samples_expected == 1500
        expected = (1500 - W) // HOP + 1
        got = recorder.wait_for(expected, timeout=30)
        assert runtime.terminate() == 0
    assert len(got) == expected
    # The numbers: the model applied to exactly the samples the frames carried.
    save_frames(frames, tmp_path / "sent.imuf")
    blocks, _ = read_frame_file(tmp_path / "sent.imuf")
    sent = np.concatenate([b.samples for b in blocks])
    np.testing.assert_allclose(np.array([m["values"] for m in got]), windows_of(sent), atol=2e-5)
    stream = pseudonym_for(device_name(device_id), tmp_path / "pseudonym.key")
    assert {m["stream"] for m in got} == {stream}
    assert [m["index"] for m in got] == list(range(expected))
    assert {t for t, _, _ in recorder.messages if t.startswith("imu/anon/")} == {f"imu/anon/{stream}"}


def test_corrupt_bytes_are_counted_and_the_stream_recovers_at_the_next_frame(
        tmp_path: Path, model: Path, broker, pty_pair, spawn) -> None:
    master, path = pty_pair
    samples = imu_signal(1200, seed=7)
    frames = frames_for(samples, DEV_A)
    positions = [i for i, f in enumerate(frames) if f != frames[0]]  # the SAMPLES frames (not HELLOs)
    lost_frame = 56  # its 8 samples are lost to the damage below
    noisy = list(frames)
    noisy.insert(30, b"\x55\xaa\x13garbage-line-noise\x00")  # between frames: nothing lost
    damaged = bytearray(noisy[positions[lost_frame] + 1])
    damaged[len(damaged) // 2] ^= 0xFF
    noisy[positions[lost_frame] + 1] = bytes(damaged)
    with Recorder(broker.port) as recorder:
        runtime = start_runtime(spawn, model, tmp_path, path, broker)
        write_all(master, b"".join(noisy))
        before, after = lost_frame * 8, 1200 - (lost_frame + 1) * 8
        expected = (before - W) // HOP + 1 + (after - W) // HOP + 1
        got = recorder.wait_for(expected, timeout=30)
        assert runtime.terminate() == 0
    counters = final_counters(runtime.log())
    assert counters["frames_corrupt"] == 2 and counters["gaps_seq"] == 1
    assert len(got) == expected
    decoded = as_decoded(samples)
    second = [m for m in got if m["segment"] == 1]
    np.testing.assert_allclose(np.array([m["values"] for m in second]),
                               windows_of(decoded[(lost_frame + 1) * 8:]), atol=2e-5)


def test_two_interleaved_devices_on_one_line_are_never_mixed(tmp_path: Path, model: Path, broker, pty_pair,
                                                             spawn) -> None:
    master, path = pty_pair
    a, b = imu_signal(900, seed=1), imu_signal(900, seed=2, offset=0.5)
    wire = b"".join(f for pair in zip(frames_for(a, DEV_A), frames_for(b, DEV_B)) for f in pair)
    with Recorder(broker.port) as recorder:
        runtime = start_runtime(spawn, model, tmp_path, path, broker)
        write_all(master, wire)
        per_device = (900 - W) // HOP + 1
        got = recorder.wait_for(2 * per_device, timeout=30)
        assert runtime.terminate() == 0
    key = tmp_path / "pseudonym.key"
    for device, samples in ((DEV_A, a), (DEV_B, b)):
        mine = [m for m in got if m["stream"] == pseudonym_for(device_name(device), key)]
        assert len(mine) == per_device
        np.testing.assert_allclose(np.array([m["values"] for m in mine]), windows_of(as_decoded(samples)), atol=2e-5)


def test_sigterm_flushes_pending_windows_publishes_offline_and_exits_zero(
        tmp_path: Path, model: Path, broker, pty_pair, spawn) -> None:
    master, path = pty_pair
    samples = imu_signal(640, seed=3)
    with Recorder(broker.port) as recorder:
        # Windows wait up to a minute for a batch of 1000: only the shutdown flush publishes them.
        runtime = start_runtime(spawn, model, tmp_path, path, broker,
                                "--pipeline-max-wait-ms", "60000", "--pipeline-max-batch", "1000")
        write_all(master, b"".join(frames_for(samples, DEV_A)))
        runtime.wait_for_line("new device")
        time.sleep(1.0)  # let the runtime read everything
        assert recorder.windows() == []
        runtime.proc.send_signal(signal.SIGTERM)
        assert runtime.proc.wait(timeout=20) == 0
        got = recorder.wait_for((640 - W) // HOP + 1, timeout=10)
        time.sleep(0.3)
        status = [json.loads(p) for t, p, _ in recorder.messages if t == "imu/gateway/gateway/status"]
    runtime.terminate()
    assert len(got) == (640 - W) // HOP + 1
    assert [s["state"] for s in status] == ["online", "offline"]
    assert status[0]["channels"] == ["acc_mag", "gyro_mag"] and status[0]["window"] == W
    assert "SIGTERM: stopping" in runtime.log()
