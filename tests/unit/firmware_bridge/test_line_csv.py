"""LineCsvDecoder: hobby-board lines in, sample blocks out; bad lines are gaps, not guesses."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.errors import ProtocolError
from firmware_bridge.linecsv import LineCsvDecoder


def test_six_comma_separated_values_per_line_become_one_sample() -> None:
    dec = LineCsvDecoder("board-1", 50.0)
    (block,) = dec.feed(b"0.1,0.2,0.98,0.01,-0.02,0.5\r\n0,0,1,0,0,0\n")
    np.testing.assert_allclose(block.samples, [[0.1, 0.2, 0.98, 0.01, -0.02, 0.5], [0, 0, 1, 0, 0, 0]], rtol=1e-6)
    assert (block.device_id, block.seq, block.epoch, block.t0, block.rate_hz) == ("board-1", 0, 0, 0.0, 50.0)
    assert dec.counters["lines_ok"] == 2


def test_lines_split_across_chunks_are_joined() -> None:
    dec = LineCsvDecoder("b", 100.0)
    assert dec.feed(b"1,2,3,") == []
    (block,) = dec.feed(b"4,5,6\n7\t8\t9\t10\t11\t12\n")
    assert block.samples.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]


def test_units_convert_to_g_and_rad_per_s() -> None:
    dec = LineCsvDecoder("b", 50.0, acc_unit="m/s^2", gyro_unit="deg/s")
    (block,) = dec.feed(b"9.80665 0 -19.6133 180 -90 0\n")
    np.testing.assert_allclose(block.samples[0], [1.0, 0.0, -2.0, np.pi, -np.pi / 2, 0.0], rtol=1e-6)


def test_a_bad_line_is_a_counted_gap_seen_in_seq_and_t0() -> None:
    dec = LineCsvDecoder("b", 10.0)
    blocks = dec.feed(b"1,1,1,1,1,1\n2,2,2,2,2,2\n3,3,oops,3,3,3\n4,4,4,4,4,4\n5,5,5,5,5\n6,6,6,6,6,6\n")
    assert [(b.seq, b.t0, len(b)) for b in blocks] == [(0, 0.0, 2), (2, 0.3, 1), (4, 0.5, 1)]
    assert dec.counters["lines_bad"] == 2 and dec.counters["lines_ok"] == 4


def test_headers_comments_and_log_messages_are_skipped_without_a_gap() -> None:
    dec = LineCsvDecoder("b", 50.0, skip_columns=1)
    blocks = dec.feed(b"ms,ax,ay,az,gx,gy,gz\n# started\n\n0,1,2,3,4,5,6\nIMU ready\n20,1,2,3,4,5,6\n")
    assert [len(b) for b in blocks] == [2] and blocks[0].samples[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert dec.counters["lines_text"] == 2


def test_nan_infinite_and_non_ascii_lines_are_bad() -> None:
    dec = LineCsvDecoder("b", 50.0)
    assert dec.feed(b"nan,0,0,0,0,0\ninf,0,0,0,0,0\n\xff\xfe,0\n") == []
    assert dec.counters["lines_bad"] == 3


def test_an_endless_line_is_capped_skipped_and_the_next_line_decodes() -> None:
    dec = LineCsvDecoder("b", 50.0, max_line=64)
    for _ in range(50):
        assert dec.feed(b"1" * 100) == []
        assert dec.buffered <= 64
    (block,) = dec.feed(b"\n1,2,3,4,5,6\n")
    assert block.seq == 1 and dec.counters["lines_oversized"] == 1


def test_settings_are_checked_with_the_valid_choices_listed() -> None:
    with pytest.raises(ProtocolError, match="acc_unit 'G' is not one of g, mg, m/s\\^2"):
        LineCsvDecoder("b", 50.0, acc_unit="G")
    with pytest.raises(ProtocolError, match="rate_hz"):
        LineCsvDecoder("b", 0.0)
