"""Errors of the exporter; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class ExportError(ImuAnonError):
    """Root of every error the exporter raises on purpose."""


class ParityError(ExportError):
    """The exported graph does not compute what the PyTorch model computes."""

    def __init__(self, message: str, *, max_abs: float, tolerance: float) -> None:
        self.max_abs = max_abs
        self.tolerance = tolerance
        super().__init__(message)
