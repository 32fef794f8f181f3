"""Errors of the trainer; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class TrainerError(ImuAnonError):
    """Root of every error the trainer raises on purpose."""
