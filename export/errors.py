"""Errors of the exporter; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class ExportError(ImuAnonError):
    """Root of every error the exporter raises on purpose."""
