"""The reference sketch cannot run here; its hardware settings must still match the gateway's preset."""

from __future__ import annotations

import re
from pathlib import Path

import firmware_bridge
from firmware_bridge.scaling import chip_preset

SKETCH = Path(firmware_bridge.__file__).resolve().parent / "firmware" / "imu_anon_nano33iot" / "imu_anon_nano33iot.ino"


def _defines() -> dict[str, int]:
    text = SKETCH.read_text()
    return {m[0]: int(m[1], 0) for m in re.findall(r"#define (\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", text)}


def test_sketch_declares_the_scales_of_the_ranges_it_configures() -> None:
    d = _defines()
    fs_xl = {0b00: 2, 0b10: 4, 0b11: 8, 0b01: 16}[(d["CTRL1_XL_104HZ_4G"] >> 2) & 3]
    fs_g = {0b00: 245, 0b01: 500, 0b10: 1000, 0b11: 2000}[(d["CTRL2_G_104HZ_1000DPS"] >> 2) & 3]
    preset = chip_preset("lsm6ds3", fs_xl, fs_g)
    assert (d["IMU_ACC_NUM"], d["IMU_ACC_DEN"]) == preset.acc_scale
    assert (d["IMU_GYRO_NUM"], d["IMU_GYRO_DEN"]) == preset.gyro_scale


def test_sketch_samples_at_50_hz_from_an_odr_of_at_least_twice_that() -> None:
    d = _defines()
    odr = {0b0011: 52, 0b0100: 104, 0b0101: 208}[d["CTRL1_XL_104HZ_4G"] >> 4]
    assert d["SAMPLE_HZ"] == 50 and odr >= 2 * d["SAMPLE_HZ"]
    assert 48_000_000 // 64 // d["SAMPLE_HZ"] - 1 < 1 << 16  # the TC3 compare value fits 16 bits
    assert d["SAMPLES_PER_FRAME"] * 12 <= 230  # fits one frame
