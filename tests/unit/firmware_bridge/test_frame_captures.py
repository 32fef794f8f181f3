"""Frame captures (.imuf): written as on the wire, read back as blocks or as a Recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.errors import RecordingError
from firmware_bridge.recordings import (
    Recording, load_frames, load_frames_recording, read_frame_file, save_frames,
)
from firmware_bridge.simulator import FaultRule, Faults, Simulator, SimulatorConfig


def _capture(tmp_path: Path, n: int = 600, device_id: int = 7, **faults) -> tuple[Path, Recording]:
    rng = np.random.default_rng(device_id)
    rec = Recording(name="walk", t=np.arange(n) / 50.0, samples=rng.normal(0, 0.3, (n, 6)).astype(np.float32),
                    rate_hz=50.0)
    wire: list[bytes] = []
    Simulator(rec, SimulatorConfig(device_id=device_id, speed=0.0, faults=Faults(**faults)),
              lambda f: wire.append(f) or True).run()
    return save_frames(wire, tmp_path / f"dev{device_id}.imuf"), rec


def test_a_capture_reads_back_as_the_blocks_the_gateway_would_see(tmp_path: Path) -> None:
    path, rec = _capture(tmp_path, drop=FaultRule(every=7))
    blocks, counters = read_frame_file(path)
    assert sum(len(b) for b in blocks) == 600 - 8 * 10  # frames 7, 14, ... 56 of 60 lost
    assert counters["frames_missing"] == 8 and counters["frames_corrupt"] == 0
    assert [(b.seq, b.t0) for b in load_frames(path)] == [(b.seq, b.t0) for b in blocks]


def test_a_capture_with_reboots_becomes_a_recording_with_increasing_time(tmp_path: Path) -> None:
    path, rec = _capture(tmp_path, reboot=FaultRule(every=20))
    out = load_frames_recording(path)
    assert len(out) == 600 and out.rate_hz == 50.0 and out.name == "dev7"
    assert np.all(np.diff(out.t) > 0)
    np.testing.assert_allclose(np.diff(out.t), 0.02, atol=1e-9)
    np.testing.assert_allclose(out.samples, rec.samples, atol=np.deg2rad(0.035))


def test_a_capture_of_two_devices_asks_which_one(tmp_path: Path) -> None:
    a, _ = _capture(tmp_path, device_id=1)
    b, _ = _capture(tmp_path, device_id=2)
    both = tmp_path / "both.imuf"
    both.write_bytes(a.read_bytes() + b.read_bytes())
    with pytest.raises(RecordingError, match="holds 2 devices .*choose one"):
        load_frames_recording(both)
    assert len(load_frames_recording(both, device_id="0000000000000002")) == 600


def test_a_file_that_is_not_a_capture_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "notes.imuf"
    junk.write_bytes(b"hello world\n" * 100)
    with pytest.raises(RecordingError, match="no decodable samples .*is it an .imuf capture"):
        load_frames(junk)
    with pytest.raises(RecordingError, match="cannot read"):
        load_frames(tmp_path / "missing.imuf")
