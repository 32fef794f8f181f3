"""Raw counts <-> physical units, and the chip presets firmware declares in its HELLO (numpy only).

A scale is an exact fraction ``numerator / denominator`` of a unit per LSB, so both datasheet
styles are carried without rounding and without floating point on the device:
"16384 LSB/g" is (1, 16384) g/LSB, "0.061 mg/LSB" is (61, 1000000) g/LSB.
Accelerometer scales are in g per LSB, gyroscope scales in degrees per second per LSB (the
unit every datasheet uses); the gateway converts the gyroscope to rad/s.

Float32 samples are sent in g and degrees per second, little-endian, whatever the HELLO's scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol import (
    ACC_X, ACC_Y, ACC_Z, AXES, FORMAT_FLOAT32, FORMAT_INT16, GYRO_X, GYRO_Y, GYRO_Z, TEMPERATURE, Hello,
)

DEG_TO_RAD = math.pi / 180.0
MPU6050_TEMP_25C = -3920  # the MPU-6050 reads T = raw / 340 + 36.53 °C; the simulator claims 25 °C


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipPreset:
    """How one IMU chip at one range hands out its data: byte order, channel order, scales."""

    name: str
    chip_id: int
    big_endian: bool
    acc_range_g: int
    gyro_range_dps: int
    acc_scale: tuple[int, int]  # g per LSB
    gyro_scale: tuple[int, int]  # deg/s per LSB
    channels: tuple[int, ...]  # the order of the chip's burst read of its output registers


# Sensitivities from the datasheets. MPU-6050 (PS-MPU-6000A rev 3.4, tables 6.1/6.2):
# big-endian, ACCEL_XOUT_H..GYRO_ZOUT_L with TEMP_OUT between acc and gyro.
_MPU6050_ACC = {2: (1, 16384), 4: (1, 8192), 8: (1, 4096), 16: (1, 2048)}
_MPU6050_GYRO = {250: (1, 131), 500: (2, 131), 1000: (5, 164), 2000: (5, 82)}  # 131, 65.5, 32.8, 16.4 LSB/(°/s)
# LSM6DS3 / LSM6DSOX (ST datasheets, table 3): little-endian, OUTX_L_G (0x22) first, so gyro
# before acc; 0.061 mg/LSB at ±2 g, 8.75 mdps/LSB at ±245 (DS3) / ±250 (DSOX) dps.
_ST_ACC = {2: (61, 1_000_000), 4: (122, 1_000_000), 8: (244, 1_000_000), 16: (488, 1_000_000)}
_ST_GYRO = {125: (4375, 1_000_000), 245: (8750, 1_000_000), 250: (8750, 1_000_000),
            500: (17500, 1_000_000), 1000: (35000, 1_000_000), 2000: (70000, 1_000_000)}
# BMI270 (Bosch BST-BMI270-DS000): little-endian, DATA_8 (0x0C) acc then gyro; scaled
# range / 32768 as Bosch's BMI2 SensorAPI does.
_BMI270_ACC = {r: (r, 32768) for r in (2, 4, 8, 16)}
_BMI270_GYRO = {r: (r, 32768) for r in (125, 250, 500, 1000, 2000)}

_CHIPS = {
    # name: (chip id, big-endian, channel order, acc table, gyro table, power-on ranges)
    "mpu6050": (1, True, (ACC_X, ACC_Y, ACC_Z, TEMPERATURE, GYRO_X, GYRO_Y, GYRO_Z), _MPU6050_ACC, _MPU6050_GYRO, (2, 250)),
    "lsm6ds3": (2, False, (GYRO_X, GYRO_Y, GYRO_Z, ACC_X, ACC_Y, ACC_Z), _ST_ACC,
                {k: v for k, v in _ST_GYRO.items() if k != 250}, (2, 245)),
    "lsm6dsox": (3, False, (GYRO_X, GYRO_Y, GYRO_Z, ACC_X, ACC_Y, ACC_Z), _ST_ACC,
                 {k: v for k, v in _ST_GYRO.items() if k != 245}, (2, 250)),
    "bmi270": (4, False, AXES, _BMI270_ACC, _BMI270_GYRO, (8, 2000)),
}
CHIPS = tuple(_CHIPS)


def chip_preset(name: str, acc_range_g: int | None = None, gyro_range_dps: int | None = None) -> ChipPreset:
    """The preset of ``name`` at the given full-scale ranges (default: the chip's power-on ranges)."""
    try:
        chip_id, big, channels, acc_table, gyro_table, (acc_default, gyro_default) = _CHIPS[name]
    except KeyError:
        raise ProtocolError(f"unknown chip {name!r}; known: {', '.join(CHIPS)}") from None
    acc = acc_default if acc_range_g is None else acc_range_g
    gyro = gyro_default if gyro_range_dps is None else gyro_range_dps
    if acc not in acc_table:
        raise ProtocolError(f"{name} has no ±{acc} g range; choose one of {sorted(acc_table)}")
    if gyro not in gyro_table:
        # ST calls the same setting ±245 (LSM6DS3) or ±250 (LSM6DSOX) dps; accept either.
        alias = {250: 245, 245: 250}.get(gyro)
        if alias not in gyro_table:
            raise ProtocolError(f"{name} has no ±{gyro} dps range; choose one of {sorted(gyro_table)}")
        gyro = alias
    return ChipPreset(name=name, chip_id=chip_id, big_endian=big, acc_range_g=acc, gyro_range_dps=gyro,
                      acc_scale=acc_table[acc], gyro_scale=gyro_table[gyro], channels=channels)


def counts_dtype(big_endian: bool) -> np.dtype:
    return np.dtype(">i2" if big_endian else "<i2")


def to_counts(samples: np.ndarray, preset: ChipPreset) -> tuple[np.ndarray, int]:
    """What ``preset``'s chip would read for ``samples`` (float [n, 6], g and rad/s):
    int16 counts [n, len(channels)] in the chip's channel order, and how many values clipped."""
    samples = np.asarray(samples, dtype=np.float64)
    acc = samples[:, 0:3] * (preset.acc_scale[1] / preset.acc_scale[0])
    gyro = samples[:, 3:6] / DEG_TO_RAD * (preset.gyro_scale[1] / preset.gyro_scale[0])
    by_axis = np.rint(np.concatenate([acc, gyro], axis=1))
    clipped = int(np.count_nonzero((by_axis > 32767) | (by_axis < -32768)))
    by_axis = np.clip(by_axis, -32768, 32767)
    out = np.zeros((samples.shape[0], len(preset.channels)), dtype=np.int16)
    for col, ch in enumerate(preset.channels):
        if ch in AXES:
            out[:, col] = by_axis[:, AXES.index(ch)]
        elif ch == TEMPERATURE:
            out[:, col] = MPU6050_TEMP_25C
    return out, clipped


def to_physical(payload: bytes, count: int, fmt: int, hello: Hello) -> np.ndarray:
    """Samples of a SAMPLES payload as float32 [count, 6]: acc in g, gyro in rad/s.

    The caller has checked that the payload holds ``count`` samples of ``hello``'s channels.
    """
    return physical_converter(hello, fmt)(payload, count)


def physical_converter(hello: Hello, fmt: int) -> Callable[[bytes, int], np.ndarray]:
    """:func:`to_physical` for one HELLO and format, with the channel order and gains worked
    out once: a decoder keeps it for the device's every frame until its next HELLO."""
    nch = len(hello.channels)
    order = [hello.channels.index(a) for a in AXES]
    pick = None if order == list(range(nch)) else np.array(order)
    if fmt == FORMAT_INT16:
        dtype = counts_dtype(hello.big_endian)
        axis_gains = [hello.acc_scale[0] / hello.acc_scale[1]] * 3 + [hello.gyro_scale[0] / hello.gyro_scale[1] * DEG_TO_RAD] * 3
    elif fmt == FORMAT_FLOAT32:
        dtype = np.dtype("<f4")
        axis_gains = [1.0, 1.0, 1.0, DEG_TO_RAD, DEG_TO_RAD, DEG_TO_RAD]
    else:
        raise ProtocolError(f"unknown sample format {fmt}")
    # Per channel of the payload (ignored channels get 1), so the product runs on the array as read.
    gains = np.ones(nch)
    gains[order] = axis_gains

    def convert(payload: bytes, count: int) -> np.ndarray:
        # In float64, then rounded once. Cast first, multiply in place, then pick: a mixed-type
        # (or byte-swapped) product into a new array releases the GIL, and on a gateway core
        # shared with reader and MQTT threads each release costs ~30 us of waiting to get it back.
        raw = np.frombuffer(payload, dtype=dtype).astype(np.float64).reshape(count, nch)
        raw *= gains
        return (raw if pick is None else raw.take(pick, axis=1)).astype(np.float32)
    return convert


def to_float_payload(samples: np.ndarray, channels: tuple[int, ...]) -> np.ndarray:
    """Float32 [n, len(channels)] in g and deg/s, laid out in ``channels`` order (float32 format)."""
    samples = np.asarray(samples, dtype=np.float64)
    phys = np.concatenate([samples[:, 0:3], samples[:, 3:6] / DEG_TO_RAD], axis=1)
    out = np.zeros((samples.shape[0], len(channels)), dtype="<f4")
    for col, ch in enumerate(channels):
        if ch in AXES:
            out[:, col] = phys[:, AXES.index(ch)]
        elif ch == TEMPERATURE:
            out[:, col] = 25.0  # °C, what the simulated chip claims
    return out
