"""Errors of the trainer; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class TrainerError(ImuAnonError):
    """Root of every error the trainer raises on purpose."""


class DatasetError(TrainerError):
    """A data set that is missing, in the wrong layout, or unusable for the chosen setting."""


class ConfigError(TrainerError):
    """A training configuration value that is out of range or unknown."""


class RunError(TrainerError):
    """A run directory that is missing, incomplete or corrupt."""
