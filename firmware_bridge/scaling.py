"""Raw counts <-> physical units, and the chip presets firmware declares in its HELLO (numpy only).

A scale is an exact fraction ``numerator / denominator`` of a unit per LSB, so both datasheet
styles are carried without rounding and without floating point on the device:
"16384 LSB/g" is (1, 16384) g/LSB, "0.061 mg/LSB" is (61, 1000000) g/LSB.
Accelerometer scales are in g per LSB, gyroscope scales in degrees per second per LSB (the
unit every datasheet uses); the gateway converts the gyroscope to rad/s.

Float32 samples are sent in g and degrees per second, little-endian, whatever the HELLO's scales.
"""

from __future__ import annotations

import functools
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


Converter = Callable[..., np.ndarray]  # (buffer, count, offset=0, out=None) -> float32 [count, 6]


def physical_converter(hello: Hello, fmt: int) -> Converter:
    """:func:`to_physical` for one HELLO and format, with the channel order and gains worked
    out once: a decoder keeps it for the device's every frame until its next HELLO. Devices
    that describe their samples alike (same chip and ranges) get the same converter, so frames
    of many devices can be converted in one call (``firmware_bridge.decoder.SampleBatch``).

    ``convert(buffer, count, offset=0, out=None)`` reads ``count`` samples starting ``offset``
    bytes into ``buffer`` (a whole frame body will do: no payload copy; so will the payloads of
    several frames joined) into ``out`` (float32 [count, 6], a new array when None). Values are
    computed in float64 and rounded to float32 once. The channel pick is a strided view, never
    ``take`` or fancy indexing: those release the GIL, and on a gateway core shared with reader
    and MQTT threads each release costs tens of microseconds of waiting to get it back (a ufunc
    into a preallocated ``out`` of a few dozen values keeps it).
    """
    if fmt not in (FORMAT_INT16, FORMAT_FLOAT32):
        raise ProtocolError(f"unknown sample format {fmt}")
    return _converter(hello.channels, hello.big_endian, hello.acc_scale, hello.gyro_scale, fmt)


@functools.lru_cache(maxsize=256)
def _converter(channels: tuple[int, ...], big_endian: bool, acc_scale: tuple[int, int], gyro_scale: tuple[int, int],
               fmt: int) -> Converter:
    nch = len(channels)
    if fmt == FORMAT_INT16:
        dtype = counts_dtype(big_endian)
        acc_gain = acc_scale[0] / acc_scale[1]
        gyro_gain = gyro_scale[0] / gyro_scale[1] * DEG_TO_RAD
    else:
        dtype, acc_gain, gyro_gain = np.dtype("<f4"), 1.0, DEG_TO_RAD
    width = dtype.itemsize
    acc, gyro = channels.index(ACC_X), channels.index(GYRO_X)
    if channels[acc:acc + 3] == AXES[:3] and channels[gyro:gyro + 3] == AXES[3:]:
        # Each sensor's x, y, z side by side, as every chip's burst read has them: one view
        # [count, sensor, axis] reads both triplets in the model's order, one ufunc converts.
        start, strides = acc * width, (nch * width, (gyro - acc) * width, width)
        gains = np.array([[acc_gain] * 3, [gyro_gain] * 3])

        def convert(buffer: bytes, count: int, offset: int = 0, out: np.ndarray | None = None) -> np.ndarray:
            if out is None:
                out = np.empty((count, 6), dtype=np.float32)
            np.multiply(np.ndarray((count, 2, 3), dtype, buffer, offset + start, strides), gains,
                        out=out.reshape(count, 2, 3), casting="unsafe")
            return out
        return convert

    # Any other order (axes interleaved): one column at a time, still without fancy indexing.
    # (np.float64 gains: a Python float next to float32 values would make the product float32.)
    columns = [(channels.index(axis), k, np.float64(acc_gain if k < 3 else gyro_gain)) for k, axis in enumerate(AXES)]

    def convert_columns(buffer: bytes, count: int, offset: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        raw = np.ndarray((count, nch), dtype, buffer, offset)
        if out is None:
            out = np.empty((count, 6), dtype=np.float32)
        for src, dst, gain in columns:
            np.multiply(raw[:, src], gain, out=out[:, dst], casting="unsafe")
        return out
    return convert_columns


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
