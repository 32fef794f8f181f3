"""Loading an exported anonymiser and running it: the only place raw windows are turned into output.

``Anonymiser.open`` refuses anything it cannot trust before the first sample arrives: a file
that does not match its ``.sha256`` sidecar, a file onnxruntime cannot parse, a model card
that is missing or inconsistent, or a graph whose inputs and outputs disagree with the card.
The exporter and the evaluator load models through the same function.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from edge_runtime.card import INPUT_NAME, OUTPUT_NAME, ModelCard
from edge_runtime.chunking import ChunkTuner
from edge_runtime.errors import ConfigError, ModelCardError, ModelFileError
from edge_runtime.integrity import file_sha256, verify_sidecar
from edge_runtime.layout import RAW_CHANNELS
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow, RawWindow

log = logging.getLogger(__name__)

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceSettings:
    """onnxruntime session settings. The defaults suit a small model on a gateway: one thread,
    and no spinning, because a spinning idle thread burns a whole core between windows."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    spinning: bool = False
    graph_optimisation: str = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    chunk: int = 0  # windows per model call; 0: measured on this machine (edge_runtime.chunking)

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"inference {name} must be an integer >= 0 (0: chosen for this machine), "
                                  f"got {value!r}")
        if self.graph_optimisation not in _OPT_LEVELS:
            raise ConfigError(
                f"inference graph_optimisation must be one of {', '.join(_OPT_LEVELS)}, got {self.graph_optimisation!r}"
            )
        if not self.providers or not all(isinstance(p, str) and p for p in self.providers):
            raise ConfigError(f"inference providers must name at least one provider, got {self.providers!r}")
        object.__setattr__(self, "providers", tuple(self.providers))

    def session_options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = _OPT_LEVELS[self.graph_optimisation]
        spin = "1" if self.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        opts.log_severity_level = 3  # onnxruntime's own warnings go to stderr unformatted; keep errors only
        return opts


def _is_dynamic(dim: object) -> bool:
    return dim is None or isinstance(dim, str)


def _signature_problems(session: ort.InferenceSession, card: ModelCard) -> list[str]:
    problems: list[str] = []
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        names = [i.name for i in inputs]
        problems.append(f"the graph must have exactly one input named {INPUT_NAME!r}, it has {names}")
    else:
        i = inputs[0]
        if i.type != "tensor(float)":
            problems.append(f"input {INPUT_NAME!r} must be float32, it is {i.type}")
        shape = list(i.shape)
        if len(shape) != 3:
            problems.append(f"input {INPUT_NAME!r} must be [N, 6, {card.window}], it is {shape}")
        else:
            if not _is_dynamic(shape[0]):
                problems.append(f"input {INPUT_NAME!r} must have a dynamic batch dimension, it is fixed at {shape[0]}")
            if shape[1] != len(RAW_CHANNELS):
                problems.append(f"input {INPUT_NAME!r} must have {len(RAW_CHANNELS)} channels, it has {shape[1]}")
            if not _is_dynamic(shape[2]) and shape[2] != card.window:
                problems.append(f"input {INPUT_NAME!r} has {shape[2]} samples but the card says window {card.window}")
    if [o.name for o in outputs] != [OUTPUT_NAME]:
        names = [o.name for o in outputs]
        problems.append(f"the graph must have exactly one output named {OUTPUT_NAME!r}, it has {names}")
    else:
        o = outputs[0]
        shape = list(o.shape)
        if o.type != "tensor(float)":
            problems.append(f"output {OUTPUT_NAME!r} must be float32, it is {o.type}")
        if len(shape) != 3:
            problems.append(f"output {OUTPUT_NAME!r} must be [N, {card.channels}, {card.window}], it is {shape}")
        else:
            if not _is_dynamic(shape[1]) and shape[1] != card.channels:
                problems.append(f"output {OUTPUT_NAME!r} has {shape[1]} channels but the card lists {card.channels}")
            if not _is_dynamic(shape[2]) and shape[2] != card.window:
                problems.append(f"output {OUTPUT_NAME!r} has {shape[2]} samples but the card says window {card.window}")
    return problems


class Anonymiser:
    """An opened, checked model. ``anonymise`` takes raw-unit windows; ``anonymise_windows``
    is the pipeline's typed form (RawWindow in, AnonymisedWindow out)."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard, path: Path, sha256: str,
                 settings: InferenceSettings) -> None:
        self._session = session
        self._card = card
        self._path = path
        self._sha256 = sha256
        self.settings = settings
        # The pipeline's samples are in g; the model may declare m/s^2 (ACC_UNITS maps to g).
        to_model = np.array([1.0 / card.acc_scale_to_g] * 3 + [1.0] * 3, dtype=np.float32)[:, None]
        self._to_model_units = None if (to_model == 1.0).all() else to_model
        # Windows arrive as views of the devices' rings and are gathered here, into one array
        # reused from call to call (grown to the largest batch seen).
        self._batch = np.empty((0, len(RAW_CHANNELS), card.window), dtype=np.float32)
        self._batch_lock = threading.Lock()
        self._chunks = ChunkTuner(settings.chunk)

    @classmethod
    def open(cls, path: str | Path, settings: InferenceSettings = InferenceSettings(),
             verify: bool = True) -> "Anonymiser":
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file; pass the .onnx written by 'imu-anon export'")
        sha256 = verify_sidecar(path) if verify else file_sha256(path)
        available = ort.get_available_providers()
        missing = [p for p in settings.providers if p not in available]
        if missing:
            raise ModelFileError(f"onnxruntime here has no {', '.join(missing)}; available: {', '.join(available)}")
        try:
            session = ort.InferenceSession(str(path), sess_options=settings.session_options(),
                                           providers=list(settings.providers))
        except Exception as exc:  # onnxruntime raises its own pybind classes for every parse failure
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(
                f"{path}: onnxruntime cannot load it ({first}); the file is not an ONNX model or is truncated: "
                "copy it again from the export"
            ) from None
        card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
        problems = _signature_problems(session, card)
        if problems:
            raise ModelCardError(problems, source=str(path))
        model = cls(session, card, path, sha256, settings)
        model._smoke_test()
        log.info("model %s: %s %s, window %d hop %d at %g Hz, %s -> %s", path.name, card.arch, card.precision,
                 card.window, card.hop, card.sample_rate_hz, card.channel_mode, ",".join(card.output_channels))
        return model

    def _smoke_test(self) -> None:
        """Run one still window now, so a graph that cannot run fails at start-up, not at the first wearer."""
        still = np.zeros((1, len(RAW_CHANNELS), self._card.window), dtype=np.float32)
        still[0, 2] = 1.0 / self._card.acc_scale_to_g  # 1 g on z: a magnitude model sees a plausible input
        try:
            out = self._run(still)
        except Exception as exc:  # an onnxruntime failure at run time, same reasoning as in open()
            raise ModelFileError(f"{self._path}: the graph fails on a test window ({str(exc)[:200]})") from None
        expected = (1, self._card.channels, self._card.window)
        if out.shape != expected:
            raise ModelCardError([f"the graph returns {list(out.shape)} for one window, "
                                  f"the card implies {list(expected)}"], source=str(self._path))

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def path(self) -> Path:
        return self._path

    @property
    def sha256(self) -> str:
        return self._sha256

    def signature(self) -> dict[str, list[dict[str, object]]]:
        """The graph's inputs and outputs: name, element type and shape (strings for dynamic dims)."""
        def describe(args: list) -> list[dict[str, object]]:
            return [{"name": a.name, "type": a.type, "shape": list(a.shape)} for a in args]
        return {"inputs": describe(self._session.get_inputs()), "outputs": describe(self._session.get_outputs())}

    def _run(self, windows: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]

    def anonymise(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows [N, 6, W] in the card's input units -> anonymised [N, C, W] in output units."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        expected = (len(RAW_CHANNELS), self._card.window)
        if x.ndim != 3 or x.shape[1:] != expected:
            raise ValueError(f"windows must be [N, {expected[0]}, {expected[1]}], got {list(x.shape)}")
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self._card.channels, self._card.window), dtype=np.float32)
        chunk = self._chunks.chunk_for(n)
        started = time.perf_counter()
        if chunk >= n:
            out = self._run(x)
        else:  # the same numbers as one call (each window is computed alone), sooner on this CPU
            out = np.empty((n, self._card.channels, self._card.window), dtype=np.float32)
            for i in range(0, n, chunk):
                out[i:i + chunk] = self._run(x[i:i + chunk])
        self._chunks.record(n, min(chunk, n), time.perf_counter() - started)
        return out

    def anonymise_windows(self, windows: Sequence[RawWindow]) -> tuple[list[AnonymisedWindow], float]:
        """The pipeline's step: one batched inference over windows from any devices.
        Returns the anonymised windows (those with a non-finite output are dropped and logged)
        and the inference time in seconds."""
        if not windows:
            return [], 0.0
        for w in windows:
            if not isinstance(w, RawWindow):
                raise TypeError(f"the anonymiser takes RawWindow, not {type(w).__name__}")
        with self._batch_lock:
            if self._batch.shape[0] < len(windows):
                self._batch = np.empty((len(windows),) + self._batch.shape[1:], dtype=np.float32)
            batch = self._batch[:len(windows)]
            # [N * 6, W] in one call: np.stack's Python-level work per array doubles the cost
            np.concatenate([w.samples for w in windows], out=batch.reshape(-1, batch.shape[2]))
            if self._to_model_units is not None:
                batch *= self._to_model_units
            started = time.perf_counter()
            out = self.anonymise(batch)
            elapsed = time.perf_counter() - started
        kept: Sequence[RawWindow] = windows
        if not np.isfinite(out).all():  # one test for the batch; per window only when one fails
            finite = np.isfinite(out).all(axis=(1, 2))
            log.warning("dropped %d window(s) whose model output is not finite", int((~finite).sum()))
            kept, out = [w for w, ok in zip(windows, finite.tolist()) if ok], out[finite]
        card = self._card
        return AnonymisedWindow._batch(_ANONYMISER_TOKEN, kept, out, channels=card.output_channels,
                                       units=card.output_units, model=self._sha256[:12]), elapsed
