"""The model card: the code form of an exported model's ONNX ``metadata_props`` (numpy-free).

Everything the runtime needs to feed a model (window, hop, rate, channels, units) and
everything a user needs to trust it (data, split, metrics, version, weights hash) travels
inside the ONNX file under keys prefixed ``imu_anon.``. Values are JSON strings.
The graph takes raw units ([N, 6, W]: acc in ``input_units``, gyro in rad/s) and returns the
anonymised model channels in physical units; ``mean``/``std`` are recorded for audit, the
standardisation itself is inside the graph.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from edge_runtime.errors import ModelCardError
from edge_runtime.layout import ACC_UNITS, RAW_CHANNELS, model_channels

FORMAT_VERSION = 1
PREFIX = "imu_anon."
INPUT_NAME = "imu"
OUTPUT_NAME = "anonymised"
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCard:
    format_version: int = FORMAT_VERSION
    window: int
    hop: int
    sample_rate_hz: float
    channel_mode: str  # "mag" (the paper's two magnitudes) or "axes"
    input_channels: tuple[str, ...] = RAW_CHANNELS
    input_units: tuple[str, ...] = ("g", "g", "g", "rad/s", "rad/s", "rad/s")
    output_channels: tuple[str, ...]
    output_units: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch: str
    flops_per_window: int  # multiply-adds x 2 of one [1, 6, W] inference, counted at export
    precision: str = "fp32"
    opset: int
    dataset: str
    split: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created: str  # ISO 8601, UTC
    code_version: str
    weights_sha256: str

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ModelCardError(problems, source="model card")

    def problems(self) -> list[str]:
        """Everything inconsistent in this card, as sentences (empty when it is sound)."""
        out: list[str] = []
        if self.format_version != FORMAT_VERSION:
            out.append(
                f"format_version {self.format_version} is not the supported {FORMAT_VERSION} "
                "(upgrade imu-anon or re-export the model)"
            )
        if not (isinstance(self.window, int) and self.window > 0):
            out.append(f"window must be a positive integer, got {self.window!r}")
        if not (isinstance(self.hop, int) and self.hop > 0):
            out.append(f"hop must be a positive integer, got {self.hop!r}")
        elif isinstance(self.window, int) and self.hop > self.window:
            out.append(f"hop {self.hop} is larger than window {self.window}: samples would be skipped")
        if not (isinstance(self.sample_rate_hz, (int, float)) and math.isfinite(self.sample_rate_hz)
                and self.sample_rate_hz > 0):
            out.append(f"sample_rate_hz must be a positive number, got {self.sample_rate_hz!r}")
        if tuple(self.input_channels) != RAW_CHANNELS:
            out.append(f"input_channels must be {list(RAW_CHANNELS)}, got {list(self.input_channels)}")
        if len(self.input_units) != len(RAW_CHANNELS):
            out.append(f"input_units must name {len(RAW_CHANNELS)} units, got {list(self.input_units)}")
        else:
            acc, gyro = set(self.input_units[:3]), set(self.input_units[3:])
            if len(acc) != 1 or next(iter(acc)) not in ACC_UNITS:
                out.append(f"accelerometer units must be one of {sorted(ACC_UNITS)}, got {list(self.input_units[:3])}")
            if gyro != {"rad/s"}:
                out.append(f"gyroscope units must be rad/s, got {list(self.input_units[3:])}")
        try:
            names, units = model_channels(self.channel_mode)
        except ValueError as exc:
            out.append(str(exc))
        else:
            if tuple(self.output_channels) != names:
                out.append(f"output_channels for mode {self.channel_mode!r} must be {list(names)}, "
                           f"got {list(self.output_channels)}")
            if tuple(self.output_units) != units:
                out.append(f"output_units for mode {self.channel_mode!r} must be {list(units)}, "
                           f"got {list(self.output_units)}")
            for label, values in (("mean", self.mean), ("std", self.std)):
                if len(values) != len(names):
                    out.append(f"{label} has {len(values)} values for {len(names)} channels")
                elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    out.append(f"{label} holds a non-finite value: {list(values)}")
            if len(self.std) == len(names) and any(
                isinstance(v, (int, float)) and v <= 0 for v in self.std
            ):
                out.append(f"std must be positive, got {list(self.std)}")
        if not (isinstance(self.flops_per_window, int) and self.flops_per_window > 0):
            out.append(f"flops_per_window must be a positive integer, got {self.flops_per_window!r}")
        if self.precision not in PRECISIONS:
            out.append(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not (isinstance(self.weights_sha256, str) and len(self.weights_sha256) == 64
                and all(c in "0123456789abcdef" for c in self.weights_sha256)):
            out.append("weights_sha256 must be 64 lowercase hex digits")
        for name in ("arch", "dataset", "split", "created", "code_version"):
            if not getattr(self, name):
                out.append(f"{name} is empty")
        return out

    @property
    def channels(self) -> int:
        return len(self.output_channels)

    @property
    def acc_scale_to_g(self) -> float:
        return ACC_UNITS[self.input_units[0]]

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries of this card: ``imu_anon.KEY`` -> JSON value."""
        return {PREFIX + k: json.dumps(v, sort_keys=True) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str = "model") -> "ModelCard":
        """Read a card back from ``metadata_props``; any missing or bad key is a ModelCardError
        that lists every problem at once."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = PREFIX + f.name
            if key not in props:
                problems.append(f"missing metadata key {key!r}")
                continue
            try:
                value = json.loads(props[key])
            except (TypeError, json.JSONDecodeError):
                problems.append(f"metadata key {key!r} is not valid JSON: {str(props[key])[:60]!r}")
                continue
            values[f.name] = tuple(value) if isinstance(value, list) else value
        if problems:
            raise ModelCardError(problems, source=source)
        try:
            return cls(**values)
        except ModelCardError as exc:
            raise ModelCardError(exc.problems, source=source) from None
        except TypeError as exc:
            raise ModelCardError([str(exc)], source=source) from None

    def replace(self, **changes: Any) -> "ModelCard":
        data = asdict(self)
        data.update(changes)
        return ModelCard(**data)
