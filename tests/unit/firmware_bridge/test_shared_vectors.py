"""The Python codec against the shared known-answer vectors (the C encoder checks the same file)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import firmware_bridge
from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.device import DeviceStream
from firmware_bridge.encoder import encode, encode_heartbeat, encode_samples_float32, encode_samples_int16
from firmware_bridge.framing import cobs_decode, cobs_encode, crc16, unframe
from firmware_bridge.protocol import FORMAT_FLOAT32, FORMAT_INT16, Heartbeat, Hello, Samples, parse

C_DIR = Path(firmware_bridge.__file__).resolve().parent / "c"
_spec = importlib.util.spec_from_file_location("gen_test_vectors", C_DIR / "gen_test_vectors.py")
gen_test_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_test_vectors)
VECTORS = Path(gen_test_vectors.JSON_PATH)
DOC = json.loads(VECTORS.read_text())
FRAMES = {f["name"]: f for f in DOC["frames"]}


def _hello(name: str) -> Hello:
    c = DOC["configs"][name]
    return Hello(device_id=c["device_id"], boot_id=c["boot_id"], firmware=tuple(c["firmware"]), chip=c["chip"],
                 big_endian=c["big_endian"], rate_mhz=c["rate_mhz"], acc_scale=tuple(c["acc_scale"]),
                 gyro_scale=tuple(c["gyro_scale"]), hello_period_ms=c["hello_period_ms"],
                 channels=tuple(c["channels"]))


def _encode(f: dict) -> bytes:
    h = _hello(f["config"])
    if f["message"] == "hello":
        return encode(h)
    if f["message"] == "heartbeat":
        return encode_heartbeat(device_id=h.device_id, boot_id=h.boot_id, seq=f["seq"], t_us=f["t_us"],
                                tx_dropped=f["tx_dropped"], status=f["status"])
    if f["format"] == "int16":
        return encode_samples_int16(device_id=h.device_id, boot_id=h.boot_id, seq=f["seq"], t_us=f["t_us"],
                                    counts=np.array(f["values"]), big_endian=h.big_endian)
    return encode_samples_float32(device_id=h.device_id, boot_id=h.boot_id, seq=f["seq"], t_us=f["t_us"],
                                  values=np.array(f["values"]))


def test_crc_is_crc16_ccitt_false_with_the_catalogue_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1 == int(DOC["crc16"]["check"], 16)
    for case in DOC["crc16"]["cases"]:
        assert crc16(bytes.fromhex(case["data"])) == int(case["crc"], 16)


@pytest.mark.parametrize("case", DOC["cobs"], ids=lambda c: f"{len(c['raw']) // 2}B")
def test_cobs_matches_the_published_examples_both_ways(case: dict) -> None:
    raw, enc = bytes.fromhex(case["raw"]), bytes.fromhex(case["encoded"])
    assert cobs_encode(raw) == enc
    assert cobs_decode(enc) == raw
    assert 0 not in enc


@pytest.mark.parametrize("name", list(FRAMES))
def test_encoder_produces_the_vector_bytes(name: str) -> None:
    assert _encode(FRAMES[name]).hex() == FRAMES[name]["wire"]


@pytest.mark.parametrize("name", list(FRAMES))
def test_vector_bytes_parse_back_to_their_fields(name: str) -> None:
    f = FRAMES[name]
    wire = bytes.fromhex(f["wire"])
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    msg = parse(unframe(wire[:-1]))
    h = _hello(f["config"])
    assert (msg.device_id, msg.boot_id) == (h.device_id, h.boot_id)
    if f["message"] == "hello":
        assert msg == h
    elif f["message"] == "heartbeat":
        assert isinstance(msg, Heartbeat)
        assert (msg.seq, msg.t_us, msg.tx_dropped, msg.status) == (f["seq"], f["t_us"], f["tx_dropped"], f["status"])
    else:
        assert isinstance(msg, Samples)
        assert (msg.seq, msg.t_us, msg.count) == (f["seq"], f["t_us"], len(f["values"]))
        assert msg.fmt == {"int16": FORMAT_INT16, "float32": FORMAT_FLOAT32}[f["format"]]


def test_decoder_turns_the_mpu6050_vector_into_physical_units() -> None:
    dec = FrameDecoder()
    dec.feed(bytes.fromhex(FRAMES["hello_mpu6050_50hz"]["wire"]))
    (block,) = dec.feed(bytes.fromhex(FRAMES["samples_int16_mpu6050"]["wire"]))
    # 16384 LSB/g and 131 LSB/(deg/s); the temperature column is carried and ignored.
    np.testing.assert_allclose(block.samples[0], [1.0, -0.5, 0.0, np.deg2rad(1.0), -np.deg2rad(1.0),
                                                  np.deg2rad(32767 / 131)], rtol=1e-6)
    np.testing.assert_allclose(block.samples[1, :3], [-2.0, 1 / 16384, -1 / 16384], rtol=1e-6)
    assert (block.seq, block.t0, block.rate_hz, block.device_id) == (0x0102, 0.02, 50.0, "0000a1b2c3d4e5f6")


def test_decoder_reads_the_lsm6ds3_vector_gyro_first_and_little_endian() -> None:
    dec = FrameDecoder()
    dec.feed(bytes.fromhex(FRAMES["hello_lsm6ds3_52hz"]["wire"]))
    (block,) = dec.feed(bytes.fromhex(FRAMES["samples_int16_lsm6ds3_wrap"]["wire"]))
    # Wire order gx gy gz ax ay az; 0.061 mg/LSB and 8.75 mdps/LSB.
    np.testing.assert_allclose(block.samples[0], [16393 * 61e-6, 0.0, -16393 * 61e-6,
                                                  *np.deg2rad([1000 * 8.75e-3, -1000 * 8.75e-3, 0.0])], rtol=1e-6)
    assert block.rate_hz == 52.0


@pytest.mark.parametrize("stream", DOC["streams"], ids=lambda s: s["name"])
def test_device_stream_schedules_exactly_the_vector_frames(stream: dict) -> None:
    fmt = {"int16": FORMAT_INT16, "float32": FORMAT_FLOAT32}[stream["format"]]
    ds = DeviceStream(_hello(stream["config"]), fmt=fmt, samples_per_frame=stream["samples_per_frame"],
                      heartbeat_period_ms=stream["heartbeat_period_ms"], now_us=stream["now_us"], seq=stream["seq"])
    for push in stream["pushes"]:
        ds.push(bytes.fromhex(push["sample"]), push["t_us"])
        assert [o.data.hex() for o in ds.drain()] == push["frames"]
    ds.flush()
    assert [o.data.hex() for o in ds.drain()] == stream["flush_frames"]


def test_stream_vector_decodes_across_the_seq_and_clock_wrap() -> None:
    stream = DOC["streams"][0]
    wire = b"".join(bytes.fromhex(h) for p in stream["pushes"] for h in p["frames"])
    wire += b"".join(bytes.fromhex(h) for h in stream["flush_frames"])
    dec = FrameDecoder()
    blocks = dec.feed(wire)
    assert [b.seq for b in blocks] == [65534, 65535, 65536, 65537]
    assert [len(b) for b in blocks] == [3, 3, 3, 2]
    t0 = [b.t0 for b in blocks]
    np.testing.assert_allclose(np.diff(t0), 0.06, atol=1e-9)  # unwrapped past 2**32 microseconds
    assert dec.counters["frames_corrupt"] == 0 and dec.counters["seq_gaps"] == 0


def test_generated_c_header_is_up_to_date() -> None:
    expected = gen_test_vectors.render(DOC)
    assert gen_test_vectors.HEADER_PATH.read_text() == expected, (
        "firmware_bridge/c/test_vectors.h is stale: run python firmware_bridge/c/gen_test_vectors.py")
