"""Errors of the edge runtime; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class EdgeRuntimeError(ImuAnonError):
    """Root of every error the edge runtime raises on purpose."""


class ModelCardError(EdgeRuntimeError):
    """A model file's metadata is missing or inconsistent."""

    def __init__(self, problems: list[str], source: str = "model") -> None:
        self.problems = list(problems)
        self.source = source
        listed = "; ".join(self.problems)
        super().__init__(
            f"{source}: refusing a model with missing or inconsistent metadata: {listed}. "
            "Re-export it with 'imu-anon export RUN_DIR --out FILE.onnx'."
        )


class IntegrityError(EdgeRuntimeError):
    """A model file does not match the sha256 recorded beside it."""


class LayoutError(EdgeRuntimeError):
    """Samples whose channels, units or rate do not match what the model expects."""


class ModelFileError(EdgeRuntimeError):
    """A model file that cannot be loaded at all (missing, not ONNX, truncated, wrong I/O)."""


class ConfigError(EdgeRuntimeError):
    """A gateway configuration (TOML file, flags, source or sink URL) that cannot be used."""


class SourceError(EdgeRuntimeError):
    """A sample source that cannot be opened (bad URL, missing file, unknown scheme)."""


class SinkError(EdgeRuntimeError):
    """An output that cannot be opened, or something other than an anonymised window sent to it."""
