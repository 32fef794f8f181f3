"""Static int8 quantisation (QDQ) of an exported fp32 file, calibrated on training windows.

The int8 file is a model in its own right: it gets its own card (``precision`` int8, its own
weights fingerprint and FLOP count) and its own sidecar, and its privacy is measured on the
file itself, because it is what gets deployed.

Why these choices:
- QDQ format, per-channel weights: onnxruntime fuses QDQ pairs into integer kernels on CPUs
  and ARM, and per-channel scales keep convolutions with uneven filters accurate.
- ``reduce_range`` (7-bit weights) on x86 CPUs without VNNI: their u8s8 multiply-add
  instruction (vpmaddubsw) saturates int16 intermediate sums, which costs ~25 % relative error
  at full range. With VNNI, or on ARM, the full 8-bit range is safe.
- Only the matrix-like operators are quantised by default: the unit conversion, magnitudes and
  (inverse) standardisation at both ends of the graph stay fp32, so raw samples are not rounded
  to 256 levels before the network sees them, and the output lands in physical units exactly.
- The first and the last of them stay fp32 too (``keep_ends``): with one input or one output
  channel they are about 1 % of the arithmetic, and they are where rounding hurts most (the
  raw signal in, the anonymised signal out). On a trained lean model this cut the int8-vs-fp32
  error from 4.6 % to 3.5 % (relative RMS) and the largest deviation from 0.12 to 0.085 g.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_runtime.card import INPUT_NAME
from export.errors import ExportError

log = logging.getLogger(__name__)

QUANTISED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# minmax: activation ranges cover every calibration value, so nothing is ever clipped (bounded
# worst case, coarser steps); moving-average: the mean of per-batch ranges, finer steps and a
# lower average error, but rare extreme samples are clipped (on the lean default model: 10 %
# instead of 13-19 % relative RMS error, and a largest deviation of ~1 g instead of ~0.4 g).
CALIBRATIONS = ("minmax", "moving-average")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """True/False on x86 Linux from the cpuinfo flags; None where there is no such file (not x86 Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if not flags:  # ARM's cpuinfo says "Features", and ARM needs no reduced range
        return None
    return any(flag in flags for flag in _VNNI_FLAGS)


def default_reduce_range(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Reduce the weight range only on x86 without VNNI (see the module docstring)."""
    return cpu_has_vnni(cpuinfo) is False


class WindowReader:
    """``CalibrationDataReader`` over raw windows [N, 6, W] in batches (duck-typed to avoid
    importing onnxruntime.quantization at module level)."""

    def __init__(self, windows: np.ndarray, batch: int = 64) -> None:
        self.windows = np.ascontiguousarray(windows, dtype=np.float32)
        self.batch = batch
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.windows), self.batch):
            yield {INPUT_NAME: self.windows[start:start + self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantise_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    *,
    reduce_range: bool | None = None,
    per_channel: bool = True,
    op_types: tuple[str, ...] = QUANTISED_OPS,
    keep_ends: bool = True,
    calibration_method: str = "minmax",
) -> list[str]:
    """Write a QDQ int8 copy of ``fp32_path`` to ``out_path`` (graph only: the caller adds the
    card and the sidecar). ``calibration`` are raw training windows [N, 6, W]. Returns the names
    of the matrix-like nodes left in fp32."""
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration_method not in CALIBRATIONS:
        raise ExportError(f"int8 calibration must be one of {list(CALIBRATIONS)}, got {calibration_method!r}")
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 3 or len(calibration) == 0:
        raise ExportError(f"int8 calibration needs raw windows [N, 6, W] with N > 0, got shape {calibration.shape}")
    if reduce_range is None:
        reduce_range = default_reduce_range()
    reader = type("Reader", (WindowReader, CalibrationDataReader), {})(calibration)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="imu-anon-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and runs symbolic shape inference so every tensor has a known type.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        excluded = _end_nodes(prepared, op_types) if keep_ends else []
        quantize_static(
            str(prepared), str(out_path), reader,
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibTensorRangeSymmetric": False,
                           "CalibMovingAverage": calibration_method == "moving-average"},
        )
    log.info("int8: %d calibration windows (%s), per-channel %s, reduce_range %s, kept fp32: %s",
             len(calibration), calibration_method, per_channel, reduce_range, ", ".join(excluded) or "none")
    return excluded


def _end_nodes(model_path: Path, op_types: tuple[str, ...]) -> list[str]:
    """Names of the first and last quantisable nodes in graph order (topological in ONNX)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [node.name for node in graph.node if node.op_type in op_types]
    if len(names) < 3:  # keeping both ends would leave nothing to quantise
        return []
    missing = [n for n in (names[0], names[-1]) if not n]
    if missing:
        raise ExportError("the graph has unnamed convolution nodes, so its ends cannot be kept in fp32; "
                          "export without keep_ends")
    return [names[0], names[-1]]
