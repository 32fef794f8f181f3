"""FrameDecoder: round trips, gateway behaviour on every kind of trouble, exact counters."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from firmware_bridge.decoder import LATE_WINDOW, FrameDecoder
from firmware_bridge.encoder import encode, encode_heartbeat, encode_samples_float32, encode_samples_int16, hello_for
from firmware_bridge.errors import ProtocolError
from firmware_bridge.framing import MAX_ENCODED, cobs_encode, crc16, frame
from firmware_bridge.protocol import AXES, HEADER, Hello, Samples, pack
from firmware_bridge.scaling import chip_preset, to_counts

DEV = 0x0102030405060708
BOOT = 0x11111111
PRESET = chip_preset("lsm6ds3", 4, 1000)
RNG = np.random.default_rng(7)
SIGNAL = (RNG.normal(0, 0.5, (200, 6)) + [0, 0, 1, 0, 0, 0]).astype(np.float32)


def hello(boot: int = BOOT, device: int = DEV, **over) -> bytes:
    h = hello_for(PRESET, device_id=device, boot_id=boot, rate_hz=50.0)
    return encode(Hello(**{**{f: getattr(h, f) for f in Hello.__slots__}, **over}))


def samples(seq: int, start: int = 0, n: int = 10, boot: int = BOOT, device: int = DEV, t_us: int | None = None) -> bytes:
    counts, _ = to_counts(SIGNAL[start:start + n], PRESET)
    t = round(start * 20_000) if t_us is None else t_us
    return encode_samples_int16(device_id=device, boot_id=boot, seq=seq & 0xFFFF, t_us=t % (1 << 32),
                                counts=counts, big_endian=False)


def decode(*frames: bytes, dec: FrameDecoder | None = None):
    dec = dec or FrameDecoder()
    return dec, dec.feed(b"".join(frames))


def test_round_trip_of_hello_samples_and_heartbeat_in_one_byte_chunks() -> None:
    wire = hello() + samples(0) + encode_heartbeat(device_id=DEV, boot_id=BOOT, seq=1, t_us=200_000, tx_dropped=2)
    dec = FrameDecoder()
    blocks = [b for i in range(len(wire)) for b in dec.feed(wire[i:i + 1])]
    assert len(blocks) == 1
    block = blocks[0]
    assert (block.device_id, block.seq, block.epoch, block.t0, block.rate_hz) == ("0102030405060708", 0, 0, 0.0, 50.0)
    # int16 at ±4 g / ±1000 dps: quantisation of 0.122 mg and 35 mdps.
    np.testing.assert_allclose(block.samples, SIGNAL[:10], atol=np.deg2rad(0.035))
    assert dec.counters["frames_ok"] == 3 and dec.counters["heartbeats"] == 1
    assert dec.last_heartbeat("0102030405060708").tx_dropped == 2
    assert dec.configs["0102030405060708"].rate_hz == 50.0


def test_float32_samples_arrive_in_g_and_rad_per_s() -> None:
    values = np.array([[0.25, -1.0, 1.5, 90.0, -180.0, 45.0]])
    wire = hello() + encode_samples_float32(device_id=DEV, boot_id=BOOT, seq=5, t_us=1_000_000,
                                            values=values[:, [3, 4, 5, 0, 1, 2]])  # LSM6DS3 channel order
    _, (block,) = decode(wire)
    np.testing.assert_allclose(block.samples[0], [0.25, -1.0, 1.5, np.pi / 2, -np.pi, np.pi / 4], rtol=1e-6)
    assert block.t0 == 1.0 and block.seq == 5


def test_samples_before_any_hello_are_dropped_and_counted_per_sample() -> None:
    dec, blocks = decode(samples(0), samples(1, 10), hello(), samples(2, 20))
    assert [b.seq for b in blocks] == [2]
    assert dec.counters["awaiting_config"] == 20


def test_a_corrupted_byte_costs_exactly_one_frame() -> None:
    good = [samples(i, 10 * i) for i in range(5)]
    bad = bytearray(good[2])
    bad[len(bad) // 2] ^= 0x40
    dec, blocks = decode(hello(), good[0], good[1], bytes(bad), good[3], good[4])
    assert [b.seq for b in blocks] == [0, 1, 3, 4]
    assert dec.counters["frames_corrupt"] == 1
    assert dec.counters["seq_gaps"] == 1 and dec.counters["frames_missing"] == 1
    assert dec.counters["bytes_skipped"] == len(bad) - 1


def test_a_lost_delimiter_merges_two_frames_and_costs_both() -> None:
    a, b = samples(0), samples(1, 10)
    dec, blocks = decode(hello(), a[:-1] + b, samples(2, 20))
    assert [blk.seq for blk in blocks] == [2]
    # Two 146-byte frames make 291 bytes: longer than any valid frame, skipped unread.
    assert dec.counters["oversized"] == 1 and dec.counters["frames_corrupt"] == 0
    short_a, short_b = samples(0, n=2), samples(1, 2, n=2)
    dec, blocks = decode(hello(), short_a[:-1] + short_b, samples(2, 4, n=2))
    assert [blk.seq for blk in blocks] == [2]
    assert dec.counters["frames_corrupt"] == 1


def test_unknown_version_and_unknown_type_are_counted_not_raised() -> None:
    body = bytearray(pack(Samples(device_id=DEV, boot_id=BOOT, seq=0, t_us=0, fmt=0, count=1, payload=bytes(12))))
    v2 = bytes([2]) + bytes(body[1:])
    t9 = bytes(body[:1]) + bytes([9]) + bytes(body[2:])
    dec, blocks = decode(hello(), frame(v2), frame(t9), samples(1))
    assert len(blocks) == 1
    assert dec.counters["unknown_version"] == 1 and dec.counters["unknown_type"] == 1


def test_hello_with_impossible_configuration_counts_bad_config_and_is_ignored() -> None:
    good = hello_for(PRESET, device_id=DEV, boot_id=BOOT, rate_hz=50.0)
    body = bytearray(pack(good))
    body[HEADER.size + 9:HEADER.size + 13] = struct.pack("<I", 0)  # acc numerator 0
    dup = bytearray(pack(good))
    dup[-1] = dup[-2]  # an axis listed twice, another missing
    dec, blocks = decode(frame(bytes(body)), frame(bytes(dup)), samples(0))
    assert blocks == []
    assert dec.counters["bad_config"] == 2 and dec.counters["awaiting_config"] == 10


def test_reboot_announced_by_a_new_hello_starts_a_new_epoch() -> None:
    dec, blocks = decode(hello(), samples(0), samples(1, 10), hello(boot=0x22222222),
                         samples(0, 20, boot=0x22222222), samples(1, 30, boot=0x22222222))
    assert [(b.epoch, b.seq) for b in blocks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert dec.counters["reboots"] == 1 and dec.counters["seq_gaps"] == 0


def test_samples_of_a_reboot_whose_hello_was_lost_wait_for_the_repeated_hello() -> None:
    new = 0x33333333
    dec, blocks = decode(hello(), samples(0), samples(0, 10, boot=new), samples(1, 20, boot=new),
                         hello(boot=new), samples(2, 30, boot=new))
    assert [(b.epoch, b.seq) for b in blocks] == [(0, 0), (1, 2)]
    assert dec.counters["awaiting_config"] == 20


def test_periodic_hello_repeats_change_nothing_but_a_new_configuration_starts_an_epoch() -> None:
    dec, blocks = decode(hello(), samples(0), hello(), samples(1, 10), hello(rate_mhz=100_000), samples(2, 20))
    assert [(b.epoch, b.seq, b.rate_hz) for b in blocks] == [(0, 0, 50.0), (0, 1, 50.0), (1, 2, 100.0)]
    assert dec.counters["config_changes"] == 1 and dec.counters["hellos"] == 3


def test_duplicates_and_late_frames_are_dropped_so_seq_stays_monotonic() -> None:
    dec, blocks = decode(hello(), samples(0), samples(2, 20), samples(1, 10), samples(2, 20), samples(3, 30))
    assert [b.seq for b in blocks] == [0, 2, 3]
    assert dec.counters["late"] == 1 and dec.counters["duplicates"] == 1
    assert dec.counters["frames_missing"] == 1


def test_sequence_and_clock_wrap_unwrap_monotonically() -> None:
    t_wrap = (1 << 32) - 10_000
    dec, blocks = decode(hello(), samples(65535, 0, t_us=t_wrap), samples(0, 10, t_us=t_wrap + 200_000),
                         samples(1, 20, t_us=t_wrap + 400_000))
    assert [b.seq for b in blocks] == [65535, 65536, 65537]
    np.testing.assert_allclose([b.t0 - blocks[0].t0 for b in blocks], [0.0, 0.2, 0.4])
    assert dec.counters["seq_gaps"] == 0


def test_a_counter_restart_without_new_boot_id_resynchronises_in_a_new_epoch() -> None:
    dec, blocks = decode(hello(), samples(1000), samples(1001, 10), samples(0, 20), samples(1, 30))
    assert [(b.epoch, b.seq) for b in blocks] == [(0, 1000), (0, 1001), (1, 0), (1, 1)]
    assert dec.counters["resyncs"] == 1
    # ...while a frame within the late window is treated as reordered, not as a restart.
    dec, blocks = decode(hello(), samples(1000), samples(1000 - LATE_WINDOW, 10))
    assert len(blocks) == 1 and dec.counters["late"] == 1


def test_two_devices_interleaved_are_never_mixed() -> None:
    other = 0xAAAABBBBCCCCDDDD
    dec, blocks = decode(hello(), hello(device=other, boot=5), samples(0, 0), samples(0, 100, device=other, boot=5),
                         samples(1, 10), samples(1, 110, device=other, boot=5))
    mine = [b for b in blocks if b.device_id == "0102030405060708"]
    theirs = [b for b in blocks if b.device_id == "aaaabbbbccccdddd"]
    assert [b.seq for b in mine] == [0, 1] and [b.seq for b in theirs] == [0, 1]
    np.testing.assert_allclose(theirs[0].samples, SIGNAL[100:110], atol=0.01)
    assert set(dec.configs) == {"0102030405060708", "aaaabbbbccccdddd"}


def test_device_table_is_bounded_and_evicts_the_least_recent() -> None:
    dec = FrameDecoder(max_devices=2)
    decode(hello(device=1), hello(device=2), hello(device=3), dec=dec)
    assert set(dec.configs) == {"0000000000000002", "0000000000000003"}
    assert dec.counters["devices_evicted"] == 1


def test_an_endless_run_without_delimiter_is_capped_and_the_next_frame_recovers() -> None:
    dec = FrameDecoder()
    dec.feed(hello())
    for _ in range(100):
        assert dec.feed(b"\x55" * 1000) == []
        assert dec.buffered <= MAX_ENCODED
    blocks = dec.feed(b"\x00" + samples(0))
    assert len(blocks) == 1
    assert dec.counters["oversized"] == 1 and dec.counters["bytes_skipped"] == 100_000


def test_oversized_frame_that_fits_the_buffer_but_not_the_protocol_is_refused() -> None:
    body = pack(Samples(device_id=DEV, boot_id=BOOT, seq=0, t_us=0, fmt=0, count=1, payload=bytes(12)))
    long_body = body + bytes(300)
    wire = cobs_encode(long_body + crc16(long_body).to_bytes(2, "little")) + b"\x00"
    dec, blocks = decode(hello(), wire, dec=FrameDecoder(max_frame=1024))
    assert blocks == [] and dec.counters["frames_corrupt"] == 1


def test_nonfinite_float_samples_are_dropped_and_counted() -> None:
    values = np.array([[0.0, 0.0, 1.0, np.nan, 0.0, 0.0]] * 3)
    dec, blocks = decode(hello(), encode_samples_float32(device_id=DEV, boot_id=BOOT, seq=0, t_us=0, values=values))
    assert blocks == [] and dec.counters["nonfinite"] == 3


def test_samples_whose_size_disagrees_with_the_hello_are_counted_as_config_mismatch() -> None:
    seven = np.zeros((2, 7), dtype=np.int16)
    wire = encode_samples_int16(device_id=DEV, boot_id=BOOT, seq=0, t_us=0, counts=seven, big_endian=False)
    dec, blocks = decode(hello(), wire)
    assert blocks == [] and dec.counters["config_mismatch"] == 1


def test_feed_survives_non_bytes_and_feed_packet_discards_a_torn_leftover() -> None:
    dec = FrameDecoder()
    assert dec.feed("not bytes") == [] and dec.feed(None) == []
    assert dec.counters["bad_input"] == 2
    dec.feed(hello())
    dec.feed(samples(0)[:20])  # torn: the rest never comes
    blocks = dec.feed_packet(samples(1, 10)[:-1])  # one MQTT message, delimiter optional
    assert [b.seq for b in blocks] == [1]
    assert dec.counters["frames_corrupt"] == 1


def test_summary_lists_only_counters_that_moved() -> None:
    dec, _ = decode(hello(), samples(0))
    assert dec.summary() == "frames_ok=2 hellos=1 samples_ok=10"
    assert FrameDecoder().summary() == "nothing received"


def test_decoder_settings_are_validated() -> None:
    with pytest.raises(ProtocolError, match="max_frame"):
        FrameDecoder(max_frame=4)
    with pytest.raises(ProtocolError, match="channels must name each axis"):
        Hello(device_id=1, boot_id=1, rate_mhz=1, acc_scale=(1, 1), gyro_scale=(1, 1), channels=(1, 2, 3))
    assert AXES == (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(("count", "payload_bytes"), [(0, 12), (5, 12), (1, 0)])
def test_a_samples_frame_whose_count_does_not_divide_its_payload_is_corrupt(count: int, payload_bytes: int) -> None:
    body = HEADER.pack(1, 0x02, DEV, BOOT) + struct.pack("<HIBB", 0, 0, 0, count) + bytes(payload_bytes)
    for chunked in (False, True):  # one whole frame per feed (the fast path), and byte by byte
        dec, wire = FrameDecoder(), hello() + frame(body)
        blocks = [b for i in range(len(wire)) for b in dec.feed(wire[i:i + 1])] if chunked else dec.feed(wire)
        assert blocks == [] and dec.counters["frames_corrupt"] == 1 and dec.counters["frames_ok"] == 1


def test_frames_fed_one_per_chunk_decode_like_one_stream() -> None:
    frames = [hello()] + [samples(i, start=10 * i) for i in range(5)]
    whole, apart = FrameDecoder(), FrameDecoder()
    one = whole.feed(b"".join(frames))
    each = [b for f in frames for b in apart.feed(f)]
    assert [(b.seq, b.t0) for b in one] == [(b.seq, b.t0) for b in each] and len(each) == 5
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(one, each))
    assert whole.counters == apart.counters
