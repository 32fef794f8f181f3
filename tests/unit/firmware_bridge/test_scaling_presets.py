"""Chip presets carry the datasheet sensitivities exactly; counts convert both ways."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol import FORMAT_INT16, TEMPERATURE, Hello
from firmware_bridge.scaling import chip_preset, counts_dtype, to_counts, to_physical


def _g_per_lsb(p):
    return p.acc_scale[0] / p.acc_scale[1]


def _dps_per_lsb(p):
    return p.gyro_scale[0] / p.gyro_scale[1]


def test_mpu6050_power_on_preset_is_16384_lsb_per_g_and_131_lsb_per_dps_big_endian() -> None:
    p = chip_preset("mpu6050")
    assert 1 / _g_per_lsb(p) == 16384 and 1 / _dps_per_lsb(p) == 131
    assert p.big_endian and p.channels == (1, 2, 3, TEMPERATURE, 4, 5, 6)
    assert 1 / _dps_per_lsb(chip_preset("mpu6050", gyro_range_dps=500)) == 65.5
    assert 1 / _dps_per_lsb(chip_preset("mpu6050", gyro_range_dps=2000)) == pytest.approx(16.4)


def test_lsm6ds3_preset_is_0_061_mg_and_8_75_mdps_little_endian_gyro_first() -> None:
    p = chip_preset("lsm6ds3")
    assert _g_per_lsb(p) == pytest.approx(0.061e-3) and _dps_per_lsb(p) == pytest.approx(8.75e-3)
    assert not p.big_endian and p.channels == (4, 5, 6, 1, 2, 3)
    assert chip_preset("lsm6dsox", gyro_range_dps=245).gyro_range_dps == 250  # ST's two names for one range


def test_bmi270_preset_scales_range_over_32768() -> None:
    p = chip_preset("bmi270")
    assert (p.acc_range_g, p.gyro_range_dps) == (8, 2000)
    assert 1 / _g_per_lsb(p) == 4096 and 1 / _dps_per_lsb(p) == pytest.approx(16.384)


def test_unknown_chip_or_range_names_the_valid_choices() -> None:
    with pytest.raises(ProtocolError, match="known: mpu6050, lsm6ds3"):
        chip_preset("adxl345")
    with pytest.raises(ProtocolError, match=r"choose one of \[2, 4, 8, 16\]"):
        chip_preset("mpu6050", acc_range_g=3)


@pytest.mark.parametrize("chip", ["mpu6050", "lsm6ds3", "lsm6dsox", "bmi270"])
def test_counts_round_trip_within_one_lsb(chip: str) -> None:
    p = chip_preset(chip, 4, 1000)
    x = np.random.default_rng(1).uniform(-3.5, 3.5, (50, 6))
    x[:, 3:] = np.deg2rad(np.random.default_rng(2).uniform(-900, 900, (50, 3)))
    counts, clipped = to_counts(x, p)
    assert clipped == 0
    hello = Hello(device_id=1, boot_id=1, big_endian=p.big_endian, rate_mhz=50_000, acc_scale=p.acc_scale,
                  gyro_scale=p.gyro_scale, channels=p.channels)
    back = to_physical(counts.astype(counts_dtype(p.big_endian)).tobytes(), 50, FORMAT_INT16, hello)
    assert np.all(np.abs(back[:, :3] - x[:, :3]) <= _g_per_lsb(p) / 2 + 1e-6)
    assert np.all(np.abs(back[:, 3:] - x[:, 3:]) <= np.deg2rad(_dps_per_lsb(p)) / 2 + 1e-6)


def test_values_beyond_the_range_saturate_and_are_counted() -> None:
    p = chip_preset("mpu6050", 2, 250)
    counts, clipped = to_counts(np.array([[2.5, -3.0, 0.0, 0.0, 0.0, np.deg2rad(300.0)]]), p)
    assert clipped == 3
    assert counts[0].tolist() == [32767, -32768, 0, -3920, 0, 0, 32767]
