"""The decode stage: frames, CSV lines and JSON samples to blocks; everything bad is counted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from runtime_helpers import as_decoded, device_name, frames_for, signal

from edge_runtime.decode import Decoders, Received
from edge_runtime.metrics import Metrics

DEV = 0x00A1B2C3D4E5F607


def decoders() -> tuple[Decoders, Metrics]:
    metrics = Metrics()
    return Decoders(metrics, lambda d: f"s-{len(d)}"), metrics


def test_frames_in_arbitrary_chunks_become_blocks_in_physical_units() -> None:
    samples = signal(80, seed=1)
    wire = b"".join(frames_for(samples, DEV))
    dec, metrics = decoders()
    blocks = []
    for start in range(0, len(wire), 37):
        blocks += dec.decode(Received("serial:/dev/x", wire[start:start + 37], "frames"))
    got = np.concatenate([b.samples for b in blocks])
    np.testing.assert_allclose(got, as_decoded(samples), atol=1e-6)
    assert {b.device_id for b in blocks} == {device_name(DEV)}
    assert metrics.get("frames_ok") == len(frames_for(samples, DEV))


def test_corrupt_bytes_are_counted_and_the_next_frame_decodes() -> None:
    frames = frames_for(signal(40, seed=2), DEV)
    damaged = bytearray(frames[2])
    damaged[5] ^= 0x55
    wire = b"".join(frames[:2]) + bytes(damaged) + b"\x13\x37garbage\x00" + b"".join(frames[3:])
    dec, metrics = decoders()
    blocks = dec.decode(Received("serial:/dev/x", wire, "frames"))
    assert metrics.get("frames_corrupt") == 2
    assert sum(len(b) for b in blocks) == 40 - 8  # the damaged frame's 8 samples are lost, nothing else
    assert blocks[1].seq == blocks[0].seq + 2  # the stream sees the gap


def test_each_origin_has_its_own_decoder_state() -> None:
    a = b"".join(frames_for(signal(16, seed=3), DEV))
    b = b"".join(frames_for(signal(16, seed=4), DEV + 1))
    dec, _ = decoders()
    # Half a frame from A must not be completed by B's bytes on another port.
    first = dec.decode(Received("serial:/dev/a", a[:len(a) // 2], "frames"))
    second = dec.decode(Received("serial:/dev/b", b, "frames"))
    rest = dec.decode(Received("serial:/dev/a", a[len(a) // 2:], "frames"))
    assert {blk.device_id for blk in second} == {device_name(DEV + 1)}
    assert {blk.device_id for blk in first + rest} == {device_name(DEV)}
    assert sum(len(blk) for blk in first + rest) == 16


def test_an_mqtt_frame_that_claims_another_device_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    frames = frames_for(signal(16, seed=5), DEV)
    dec, metrics = decoders()
    own = [blk for f in frames for blk in dec.decode(Received(f"mqtt:imu/{device_name(DEV)}/raw", f, "mqtt",
                                                              device=device_name(DEV)))]
    assert sum(len(b) for b in own) == 16
    with caplog.at_level(logging.WARNING):
        stolen = [blk for f in frames for blk in dec.decode(Received("mqtt:imu/0000000000000001/raw", f, "mqtt",
                                                                     device="0000000000000001"))]
    assert stolen == [] and metrics.get("blocks_device_mismatch") == 2
    assert "another device id" in caplog.text and device_name(DEV) not in caplog.text


def test_json_samples_are_accepted_and_converted_to_g_and_rad_per_s() -> None:
    dec, metrics = decoders()
    msg = {"seq": 3, "t0": 1.5, "rate_hz": 50, "samples": [[9.80665, 0, 0, 180, 0, 0]] * 4,
           "units": ["m/s^2"] * 3 + ["deg/s"] * 3}
    [block] = dec.decode(Received("mqtt:imu/w1/raw", json.dumps(msg).encode(), "mqtt", device="w1"))
    assert (block.device_id, block.seq, block.t0, block.rate_hz) == ("w1", 3, 1.5, 50.0)
    np.testing.assert_allclose(block.samples[0], [1, 0, 0, np.pi, 0, 0], rtol=1e-6)
    assert metrics.get("json_ok") == 1


def test_json_samples_in_another_channel_layout_are_refused_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    dec, metrics = decoders()
    msg = {"rate_hz": 50, "samples": [[0, 0, 1, 0, 0, 0]] * 5,
           "channels": ["gyro_x", "gyro_y", "gyro_z", "acc_x", "acc_y", "acc_z"]}
    with caplog.at_level(logging.WARNING):
        assert dec.decode(Received("mqtt:imu/w1/raw", json.dumps(msg).encode(), "mqtt", device="w1")) == []
    assert metrics.get("samples_refused_layout") == 5
    assert "refusing samples with channels" in caplog.text and "w1" not in caplog.text


@pytest.mark.parametrize("bad", [b"{not json", b'{"samples": [[1, 2]], "rate_hz": 50}',
                                 b'{"samples": [], "rate_hz": 5}',
                                 b'{"samples": [[1,2,3,4,5,"x"]], "rate_hz": 50}', b'[1, 2]',
                                 b'{"samples": [[0,0,1,0,0,0]], "rate_hz": -1}'])
def test_malformed_json_is_counted_never_raised(bad: bytes) -> None:
    dec, metrics = decoders()
    assert dec.decode(Received("mqtt:imu/w1/raw", bad, "json", device="w1")) == []
    assert metrics.get("json_rejected") + metrics.get("samples_refused_layout") >= 1


def test_csv_lines_from_a_serial_port_become_blocks() -> None:
    dec, metrics = decoders()
    lines = b"acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0,0,1,0,0,0\n0.1,0,1,0,0,0\n0.15,0,oops,0,0,0\n0.2,0,1,0,0,0\n"
    blocks = dec.decode(Received("serial:/dev/x", lines, "csv", device="proto", rate_hz=50.0))
    assert [len(b) for b in blocks] == [2, 1] and blocks[1].seq == blocks[0].seq + 2
    assert metrics.get("lines_ok") == 3 and metrics.get("lines_bad") == 1


def test_decoding_many_items_at_once_gives_what_decoding_them_one_by_one_gives() -> None:
    from edge_runtime.benchmark.fleet import Fleet

    wearables = Fleet(duration_s=3.0).wearables(3)
    longest = max(len(w.frames) for w in wearables)
    items = [Received(f"serial:/dev/{i % 2}", w.frames[k], "frames") for k in range(longest)
             for i, w in enumerate(wearables) if k < len(w.frames)]
    items.append(Received("mqtt:imu/w1/raw", json.dumps({"rate_hz": 50, "samples": [[0, 0, 1, 0, 0, 0]] * 3}).encode(),
                          "mqtt", device="w1"))
    one, one_metrics = decoders()
    many, many_metrics = decoders()
    want = [one.decode(item) for item in items]
    got = [blocks for start in range(0, len(items), 7) for blocks in many.decode_many(items[start:start + 7])]
    assert [len(b) for b in got] == [len(b) for b in want] and sum(len(b) for b in got) == 3 * 15 + 1
    for g, w in zip((b for blocks in got for b in blocks), (b for blocks in want for b in blocks)):
        assert (g.device_id, g.seq, g.epoch, g.t0, g.rate_hz) == (w.device_id, w.seq, w.epoch, w.t0, w.rate_hz)
        np.testing.assert_array_equal(g.samples, w.samples)
    assert many_metrics.snapshot() == one_metrics.snapshot()


def test_decoding_many_still_drops_frames_that_claim_another_device() -> None:
    frames = frames_for(signal(16, seed=6), DEV)
    dec, metrics = decoders()
    got = dec.decode_many([Received("mqtt:imu/0000000000000001/raw", f, "mqtt", device="0000000000000001")
                           for f in frames])
    assert got == [[] for _ in frames] and metrics.get("blocks_device_mismatch") == 2
