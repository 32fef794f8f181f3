"""The per-frame path of the gateway: exact conversion without fancy indexing, batched
conversion, remembered HELLOs, and the SAMPLES header read without a message object."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.decoder import FrameDecoder, SampleBatch
from firmware_bridge.encoder import encode, encode_samples_float32, encode_samples_int16, hello_for
from firmware_bridge.framing import FrameRejected, cobs_decode, frame, unframe
from firmware_bridge.protocol import (AXES, FORMAT_FLOAT32, FORMAT_INT16, SAMPLES, SAMPLES_HEAD, TEMPERATURE, VERSION,
                                      Hello, Samples, pack, samples_fields, samples_header)
from firmware_bridge.scaling import CHIPS, DEG_TO_RAD, chip_preset, counts_dtype, physical_converter, to_counts

RNG = np.random.default_rng(11)
SIGNAL = (RNG.normal(0, 0.5, (400, 6)) + [0, 0, 1, 0, 0, 0]).astype(np.float32)
LAYOUTS = [AXES, (4, 5, 6, 1, 2, 3), (1, 2, 3, TEMPERATURE, 4, 5, 6), (6, 5, 4, 3, 2, 1), (1, 4, 2, 5, 3, 6),
           (9, 1, 2, 3, 8, 4, 5, 6)]


def reference(payload: bytes, count: int, fmt: int, hello: Hello) -> np.ndarray:
    """The conversion as specified: read, scale in float64, pick the axes, round to float32 once."""
    nch = len(hello.channels)
    if fmt == FORMAT_INT16:
        raw = np.frombuffer(payload, counts_dtype(hello.big_endian)).astype(np.float64).reshape(count, nch)
        acc, gyro = hello.acc_scale[0] / hello.acc_scale[1], hello.gyro_scale[0] / hello.gyro_scale[1] * DEG_TO_RAD
        gains = [acc] * 3 + [gyro] * 3
    else:
        raw = np.frombuffer(payload, "<f4").astype(np.float64).reshape(count, nch)
        gains = [1.0] * 3 + [DEG_TO_RAD] * 3
    return np.stack([raw[:, hello.channels.index(a)] * g for a, g in zip(AXES, gains)], axis=1).astype(np.float32)


@pytest.mark.parametrize("channels", LAYOUTS)
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("fmt", [FORMAT_INT16, FORMAT_FLOAT32])
def test_the_converter_is_bit_exact_for_any_channel_order_byte_order_and_format(channels, big_endian, fmt) -> None:
    hello = Hello(device_id=1, boot_id=1, big_endian=big_endian, rate_mhz=50_000, acc_scale=(61, 1_000_000),
                  gyro_scale=(8750, 1_000_000), channels=channels)
    for count in (1, 10, 19):
        if fmt == FORMAT_INT16:
            raw = RNG.integers(-32768, 32768, (count, len(channels))).astype(counts_dtype(big_endian))
        else:
            raw = (RNG.standard_normal((count, len(channels))) * 500).astype("<f4")
        payload = raw.tobytes()
        want = reference(payload, count, fmt, hello)
        convert = physical_converter(hello, fmt)
        got = convert(payload, count)
        assert got.dtype == np.float32 and got.shape == (count, 6) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(convert(b"\xee" * 22 + payload, count, 22), want)  # read in place in a body
        out = np.full((count + 2, 6), 7.0, np.float32)
        convert(payload, count, 0, out[1:count + 1])
        np.testing.assert_array_equal(out[1:count + 1], want)
        assert (out[0] == 7.0).all() and (out[-1] == 7.0).all()


def test_devices_that_describe_their_samples_alike_share_one_converter() -> None:
    a = hello_for(chip_preset("lsm6ds3"), device_id=1, boot_id=1, rate_hz=50.0)
    b = hello_for(chip_preset("lsm6ds3"), device_id=2, boot_id=9, rate_hz=50.0)
    c = hello_for(chip_preset("lsm6ds3", 8), device_id=3, boot_id=1, rate_hz=50.0)
    assert physical_converter(a, FORMAT_INT16) is physical_converter(b, FORMAT_INT16)
    assert physical_converter(a, FORMAT_INT16) is not physical_converter(c, FORMAT_INT16)
    assert physical_converter(a, FORMAT_INT16) is not physical_converter(a, FORMAT_FLOAT32)


def _wire(chip: str, device: int, frames: int, start_seq: int = 0) -> list[bytes]:
    preset = chip_preset(chip)
    out = [encode(hello_for(preset, device_id=device, boot_id=5, rate_hz=50.0))]
    for k in range(frames):
        counts, _ = to_counts(SIGNAL[10 * k:10 * k + 10], preset)
        out.append(encode_samples_int16(device_id=device, boot_id=5, seq=start_seq + k, t_us=200_000 * k,
                                        counts=counts, big_endian=preset.big_endian))
    return out


def test_a_batch_converts_the_frames_of_many_devices_and_chips_to_the_same_blocks() -> None:
    streams = [_wire(chip, 100 + i, 12) for i, chip in enumerate(CHIPS)]
    interleaved = [f for k in range(13) for s in streams for f in s[k:k + 1]]
    plain, batched = FrameDecoder(), FrameDecoder()
    want = [b for f in interleaved for b in plain.feed(f)]
    batch = SampleBatch()
    batch.ROWS = 25  # several buffers per layout
    got = [b for f in interleaved for b in batched.feed(f, batch)]
    batch.finish()
    assert len(got) == len(want) == 12 * len(CHIPS)
    for g, w in zip(got, want):
        assert (g.device_id, g.seq, g.epoch, g.t0, g.rate_hz) == (w.device_id, w.seq, w.epoch, w.t0, w.rate_hz)
        np.testing.assert_array_equal(g.samples, w.samples)
    assert batched.counters == plain.counters
    batch.finish()  # nothing left: a second finish writes nothing


def test_float32_frames_are_converted_at_once_even_in_a_batch_so_nonfinite_ones_are_dropped() -> None:
    preset = chip_preset("lsm6ds3")
    wire = encode(hello_for(preset, device_id=7, boot_id=1, rate_hz=50.0))
    good = np.ones((2, 6))
    bad = good.copy()
    bad[1, 2] = np.nan
    wire += encode_samples_float32(device_id=7, boot_id=1, seq=0, t_us=0, values=bad)
    wire += encode_samples_float32(device_id=7, boot_id=1, seq=1, t_us=40_000, values=good)
    dec, batch = FrameDecoder(), SampleBatch()
    blocks = dec.feed(wire, batch)
    batch.finish()
    assert [b.seq for b in blocks] == [1] and dec.counters["nonfinite"] == 2


def test_a_repeated_hello_is_recognised_byte_for_byte_and_a_changed_one_still_starts_an_epoch() -> None:
    preset = chip_preset("lsm6ds3")
    first = hello_for(preset, device_id=3, boot_id=1, rate_hz=50.0)
    changed = Hello(**{**{f: getattr(first, f) for f in Hello.__slots__}, "rate_mhz": 100_000})
    dec = FrameDecoder()
    dec.feed(encode(first) * 3)
    assert dec.counters["hellos"] == 3 and dec.counters["config_changes"] == 0
    dec.feed(encode(changed) + encode(first))
    assert dec.counters["config_changes"] == 2 and dec.configs["0000000000000003"] == first


def test_the_samples_header_is_read_without_copying_and_checked_like_a_samples_message() -> None:
    payload = bytes(range(1, 25))
    body = pack(Samples(device_id=9, boot_id=2, seq=3, t_us=4, fmt=FORMAT_INT16, count=2, payload=payload))
    assert samples_header(body) == (VERSION, SAMPLES, 9, 2, 3, 4, FORMAT_INT16, 2)
    assert body[SAMPLES_HEAD.size:] == payload and samples_fields(body)[-1] == payload
    for bad in (body[:SAMPLES_HEAD.size - 1], body[:SAMPLES_HEAD.size], body[:-1]):
        with pytest.raises(FrameRejected) as info:
            samples_header(bad)
        assert info.value.reason == "frames_corrupt"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_unframe_takes_any_bytes_like_and_rejects_a_bad_crc(kind) -> None:
    body = bytes(range(0, 200, 3)) + bytes(5)
    wire = frame(body)[:-1]
    assert unframe(kind(wire)) == body and cobs_decode(kind(wire))[:-2] == body
    broken = bytearray(wire)
    broken[3] ^= 0x40
    with pytest.raises(FrameRejected, match="CRC"):
        unframe(kind(bytes(broken)))
