"""Errors of the firmware bridge; each says what to do about it."""

from __future__ import annotations

from imu_anon.errors import ImuAnonError


class BridgeError(ImuAnonError):
    """Root of every error the firmware bridge raises on purpose."""


class RecordingError(BridgeError):
    """A recording file that cannot be read as IMU samples."""


class ProtocolError(BridgeError):
    """A message that protocol version 1 cannot carry (a field out of range, too many samples)."""


class DeviceError(BridgeError):
    """The simulated device cannot reach its port or broker, or was set up inconsistently."""
