"""int8 choices that depend on the CPU, and the calibration reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.errors import ExportError
from export.exporter import ExportOptions
from export.quantise import WindowReader, cpu_has_vnni, default_reduce_range, quantise_int8

X86_OLD = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse avx2\n"
X86_VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
X86_AVX_VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n"
ARM = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid asimddp\n"


@pytest.mark.parametrize("cpuinfo, vnni, reduce", [
    (X86_OLD, False, True),
    (X86_VNNI, True, False),
    (X86_AVX_VNNI, True, False),
    (ARM, None, False),
])
def test_weights_use_seven_bits_only_on_x86_without_vnni(tmp_path: Path, cpuinfo: str, vnni, reduce) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_has_vnni(path) is vnni
    assert default_reduce_range(path) is reduce


def test_a_machine_without_cpuinfo_keeps_the_full_range(tmp_path: Path) -> None:
    assert cpu_has_vnni(tmp_path / "missing") is None
    assert default_reduce_range(tmp_path / "missing") is False


def test_the_reader_hands_out_every_window_once_per_pass_in_bounded_batches() -> None:
    windows = np.arange(10 * 6 * 4, dtype=np.float32).reshape(10, 6, 4)
    reader = WindowReader(windows, batch=4)
    for _ in range(2):  # the calibrator may rewind and read again
        batches = []
        while (item := reader.get_next()) is not None and len(batches) < 10:
            batches.append(item["imu"])
        assert [len(b) for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(batches), windows)
        reader.rewind()


def test_an_unknown_calibration_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"int8 calibration must be one of \['minmax', 'moving-average'\]"):
        ExportOptions(calibration="entropy")
    with pytest.raises(ExportError, match="int8 calibration must be one of"):
        quantise_int8(tmp_path / "missing.onnx", tmp_path / "out.onnx", np.zeros((4, 6, 8), np.float32),
                      calibration_method="entropy")
