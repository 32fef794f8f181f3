"""Property-based: nothing crashes the decoders, and valid frames survive any garbage."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.encoder import encode_samples_int16, hello_for
from firmware_bridge.framing import MAX_ENCODED, cobs_decode, cobs_encode, frame, unframe
from firmware_bridge.linecsv import LineCsvDecoder
from firmware_bridge.protocol import pack
from firmware_bridge.scaling import chip_preset

PRESET = chip_preset("mpu6050", 4, 1000)
DEV, BOOT = 0x0F0E0D0C0B0A0908, 0xABCDEF01
HELLO = frame(pack(hello_for(PRESET, device_id=DEV, boot_id=BOOT, rate_hz=50.0)))
COUNTS = np.random.default_rng(3).integers(-3000, 3000, size=(80, 7)).astype(np.int16)
SAMPLES = [encode_samples_int16(device_id=DEV, boot_id=BOOT, seq=k, t_us=k * 100_000, counts=COUNTS[5 * k:5 * k + 5],
                                big_endian=True) for k in range(16)]
CLEAN = {b.seq: b.samples for b in FrameDecoder().feed(HELLO + b"".join(SAMPLES))}
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _invariants(dec: FrameDecoder) -> None:
    assert dec.buffered <= dec.max_frame
    assert dec.counters["internal_errors"] == 0
    assert all(v >= 0 for v in dec.counters.values())


@PROPS
@given(st.lists(st.binary(max_size=600), max_size=12))
def test_random_bytes_never_raise_and_never_grow_the_buffer(chunks: list[bytes]) -> None:
    dec = FrameDecoder()
    for chunk in chunks:
        dec.feed(chunk)
        _invariants(dec)


@PROPS
@given(st.binary(max_size=2000), st.booleans())
def test_valid_frames_after_any_garbage_are_all_recovered(garbage: bytes, delimited: bool) -> None:
    dec = FrameDecoder()
    # Without a delimiter after the garbage, the first frame may be swallowed: it is a sacrifice.
    wire = garbage + (b"\x00" if delimited else SAMPLES[15]) + HELLO + b"".join(SAMPLES[:8])
    blocks = dec.feed(wire)
    got = {b.seq: b.samples for b in blocks if b.device_id == f"{DEV:016x}"}
    assert sorted(got) == list(range(8))
    for seq, samples in got.items():
        np.testing.assert_array_equal(samples, CLEAN[seq])
    _invariants(dec)


@PROPS
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=200))
def test_any_chunking_gives_the_same_blocks(sizes: list[int]) -> None:
    wire = HELLO + b"".join(SAMPLES)
    dec, blocks, pos, i = FrameDecoder(), [], 0, 0
    while pos < len(wire):
        step = sizes[i % len(sizes)]
        blocks += dec.feed(wire[pos:pos + step])
        pos, i = pos + step, i + 1
    assert [b.seq for b in blocks] == list(range(16))
    for b in blocks:
        np.testing.assert_array_equal(b.samples, CLEAN[b.seq])


@PROPS
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=6))
def test_each_corrupted_byte_costs_at_most_one_samples_frame_and_never_yields_wrong_samples(flips) -> None:
    wire = bytearray(b"".join(HELLO + s for s in SAMPLES))
    for pos, mask in flips:
        wire[pos % len(wire)] ^= mask
    dec = FrameDecoder()
    blocks = dec.feed(bytes(wire))
    for b in blocks:
        np.testing.assert_array_equal(b.samples, CLEAN[b.seq])
    # A flipped byte spoils its frame, or the two beside a delimiter it hit; HELLO repeats
    # before every SAMPLES frame here, so each flip costs at most one SAMPLES frame.
    assert len(blocks) >= len(SAMPLES) - len(flips)
    _invariants(dec)


@PROPS
@given(st.binary(max_size=300))
def test_cobs_round_trips_any_bytes_and_frames_fit_the_limit(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded and cobs_decode(encoded) == data
    body = data[:252]
    if body:
        wire = frame(body)
        assert len(wire) - 1 <= MAX_ENCODED and unframe(wire[:-1]) == body


@PROPS
@given(st.lists(st.binary(max_size=400), max_size=10))
def test_line_csv_decoder_survives_any_bytes(chunks: list[bytes]) -> None:
    dec = LineCsvDecoder("hobby", 50.0)
    for chunk in chunks:
        for block in dec.feed(chunk):
            assert block.samples.shape[1] == 6 and np.isfinite(block.samples).all()
    assert dec.buffered <= dec.config.max_line
