"""The decoder's trusted shortcuts make exactly what the checked paths make: frame bodies,
wire-read messages and sample blocks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from firmware_bridge.blocks import SampleBlock
from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.encoder import encode, encode_heartbeat, hello_for
from firmware_bridge.framing import FrameRejected, cobs_decode, cobs_encode, frame, frame_body, unframe
from firmware_bridge.protocol import FORMAT_INT16, Heartbeat, Samples, pack, parse
from firmware_bridge.scaling import chip_preset

RNG = np.random.default_rng(5)


def _reference_cobs_decode(data: bytes) -> bytes:
    """COBS decoding as the specification states it, block by block."""
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


@pytest.mark.parametrize("length", [0, 1, 2, 120, 252, 253, 254, 255, 300, 600])
def test_cobs_decodes_what_it_encoded_at_every_length_and_density_of_zeros(length: int) -> None:
    for zeros in (0.0, 0.1, 0.5, 1.0):
        data = bytes(np.where(RNG.random(length) < zeros, 0, RNG.integers(1, 256, length)).astype(np.uint8))
        encoded = cobs_encode(data)
        assert 0 not in encoded and _reference_cobs_decode(encoded) == data
        assert cobs_decode(encoded) == data


@pytest.mark.parametrize("length", [1, 30, 140, 250, 252])
def test_frame_body_is_unframe_without_the_delimiter_copy(length: int) -> None:
    for zeros in (0.0, 0.2, 1.0):
        body = bytes(np.where(RNG.random(length) < zeros, 0, RNG.integers(1, 256, length)).astype(np.uint8))
        wire = frame(body)
        got = frame_body(wire, len(wire) - 1)
        assert isinstance(got, bytearray) and got == body == unframe(wire[:-1])


def test_frame_body_rejects_what_unframe_rejects_for_the_same_reason() -> None:
    wire = frame(bytes(range(1, 60)) + bytes(4))
    broken = bytearray(wire)
    broken[5] ^= 0x11
    for bad in (bytes(broken), b"\x05\x01\x02\x00", b"\x01\x00", b"\x03\x01\x00", b"\xff\x01\x00"):
        end = len(bad) - 1
        with pytest.raises(FrameRejected) as want:
            unframe(bad[:end])
        with pytest.raises(FrameRejected) as got:
            frame_body(bad, end)
        assert got.value.reason == want.value.reason == "frames_corrupt"


def test_wire_read_heartbeats_and_samples_equal_the_checked_constructors() -> None:
    beat = Heartbeat(device_id=2**64 - 1, boot_id=7, seq=65535, t_us=2**32 - 1, tx_dropped=3, status=1)
    assert parse(pack(beat)) == beat and type(parse(pack(beat))) is Heartbeat
    samples = Samples(device_id=9, boot_id=2, seq=3, t_us=4, fmt=FORMAT_INT16, count=2, payload=bytes(range(1, 25)))
    parsed = parse(pack(samples))
    assert parsed == samples and type(parsed.payload) is bytes
    for name in (f.name for f in dataclasses.fields(Heartbeat)):
        assert getattr(parse(pack(beat)), name) == getattr(beat, name)


def test_the_trusted_block_constructor_sets_every_field_as_the_constructor_does() -> None:
    samples = np.ones((10, 6), np.float32)
    made = SampleBlock._trusted("abc", 4, 1, 2.5, 50.0, samples)
    reference = SampleBlock("abc", 4, 1, 2.5, 50.0, samples)
    assert made == reference and repr(made) == repr(reference) and made.samples is samples
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.seq = 5  # type: ignore[misc]


def test_a_packet_without_its_delimiter_decodes_like_one_with_it() -> None:
    preset = chip_preset("lsm6ds3")
    hello = encode(hello_for(preset, device_id=7, boot_id=1, rate_hz=50.0))
    beat = encode_heartbeat(device_id=7, boot_id=1, seq=0, t_us=0)
    with_, without = FrameDecoder(), FrameDecoder()
    for packet in (hello, beat):
        assert with_.feed_packet(packet) == without.feed_packet(packet[:-1]) == []
    assert with_.counters == without.counters and without.counters["heartbeats"] == 1
    assert without.feed_packet(b"") == [] and without.feed_packet(b"\x03\x01") == []
    assert without.counters["frames_corrupt"] == with_.counters["frames_corrupt"] + 1
