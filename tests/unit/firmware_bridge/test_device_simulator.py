"""The simulated wearable: faults are injected exactly as reported, pace follows the clock."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.errors import DeviceError
from firmware_bridge.recordings import Recording, load_hapt_user
from firmware_bridge.simulator import FaultRule, Faults, Simulator, SimulatorConfig, hapt_device_id


def _recording(n: int = 1000, rate: float = 50.0, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.4, (n, 6)).astype(np.float32)
    x[:, 2] += 1.0
    return Recording(name="synthetic", t=np.arange(n) / rate, samples=x, rate_hz=rate)


def _run(rec: Recording, **over):
    wire: list[bytes] = []
    config = SimulatorConfig(**{"device_id": 0x42, "speed": 0.0, **over})
    summary = Simulator(rec, config, lambda f: wire.append(f) or True).run()
    dec = FrameDecoder()
    blocks = dec.feed(b"".join(wire))
    return summary, dec, blocks


def test_a_clean_run_delivers_every_sample_in_order_within_one_lsb() -> None:
    rec = _recording()
    summary, dec, blocks = _run(rec)
    got = np.concatenate([b.samples for b in blocks])
    assert summary.samples_sent == 1000 == len(got) and summary.samples_lost == 0
    assert [b.seq for b in blocks] == list(range(100))
    np.testing.assert_allclose(got, rec.samples, atol=np.deg2rad(0.035))  # ±1000 dps: 35 mdps/LSB
    assert summary.hellos == 10 and summary.heartbeats == 19  # every 2 s and every 1 s of 20 s
    assert dec.counters["frames_corrupt"] == 0 and dec.counters["heartbeats"] == 19


def test_injected_faults_account_exactly_for_every_lost_sample() -> None:
    rec = _recording(3000)
    faults = Faults(drop=FaultRule(probability=0.05), corrupt=FaultRule(probability=0.05), duplicate=FaultRule(probability=0.05),
                    reorder=FaultRule(probability=0.05), reboot=FaultRule(every=70), seed=11)
    summary, dec, blocks = _run(rec, faults=faults)
    assert min(summary.dropped, summary.corrupted, summary.duplicated, summary.reordered, summary.reboots) > 0
    assert sum(len(b) for b in blocks) == summary.samples_expected == dec.counters["samples_ok"]
    assert dec.counters["duplicates"] == summary.duplicated
    assert dec.counters["late"] == summary.reordered
    assert dec.counters["reboots"] == summary.reboots == 4
    assert dec.counters["frames_corrupt"] >= summary.corrupted


def test_every_k_rules_hit_exactly_every_kth_samples_frame() -> None:
    summary, dec, blocks = _run(_recording(500), faults=Faults(drop=FaultRule(every=5)))
    assert summary.dropped == 10
    assert [b.seq for b in blocks] == [s for s in range(50) if (s + 1) % 5]
    # The gateway sees nine gaps: nothing follows the last frame, so its loss is invisible.
    assert dec.counters["frames_missing"] == 9


def test_the_same_seed_gives_the_same_bytes() -> None:
    faults = Faults(corrupt=FaultRule(probability=0.2), reorder=FaultRule(probability=0.1), seed=5)
    a, b = [], []
    cfg = SimulatorConfig(device_id=1, speed=0.0, faults=faults)
    Simulator(_recording(300), cfg, lambda f: a.append(f) or True).run()
    Simulator(_recording(300), cfg, lambda f: b.append(f) or True).run()
    assert a == b


def test_reboot_restarts_seq_and_clock_in_a_new_epoch() -> None:
    summary, dec, blocks = _run(_recording(400), faults=Faults(reboot=FaultRule(every=10)))
    assert summary.reboots == 4 == dec.counters["reboots"]  # the last one after the 40th frame
    assert [b.epoch for b in blocks] == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    assert [b.seq for b in blocks[10:20]] == list(range(10))
    assert blocks[10].t0 == pytest.approx(0.02)  # first sample 20 ms after the reboot


def test_a_port_that_refuses_frames_counts_them_as_tx_drops() -> None:
    wire: list[bytes] = []
    calls = iter(range(10**6))

    def flaky(frame: bytes) -> bool:
        ok = next(calls) % 7 != 3
        if ok:
            wire.append(frame)
        return ok

    summary = Simulator(_recording(1000), SimulatorConfig(device_id=9, speed=0.0, hello_period_ms=200), flaky).run()
    dec = FrameDecoder()
    got = sum(len(b) for b in dec.feed(b"".join(wire)))
    assert summary.tx_dropped > 0 and got == summary.samples_expected


def test_pace_follows_the_injected_clock_at_the_requested_speed() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    config = SimulatorConfig(device_id=1, speed=4.0, heartbeat_period_ms=0)
    Simulator(_recording(500), config, lambda f: True, clock=lambda: now[0], sleep=sleep).run()
    # The last frame leaves with the last sample at 9.98 s of device time: 2.495 s at 4x.
    assert now[0] - 100.0 == pytest.approx(9.98 / 4)
    # 50 SAMPLES frames and 4 repeated HELLOs each leave at the time of their last sample.
    assert len(slept) == 54 and min(slept) > 0


def test_loop_and_duration_stream_past_the_end_of_the_recording() -> None:
    summary, _, blocks = _run(_recording(100), loop=True, duration_s=7.0)
    assert summary.samples_sent == 350
    t0 = np.array([b.t0 for b in blocks])
    np.testing.assert_allclose(np.diff(t0), 0.2)


def test_counters_near_their_wrap_stay_continuous_for_the_gateway() -> None:
    summary, dec, blocks = _run(_recording(600), seq_start=65530, clock_start_us=(1 << 32) - 3_000_000)
    assert [b.seq for b in blocks] == list(range(65530, 65590))
    np.testing.assert_allclose(np.diff([b.t0 for b in blocks]), 0.2)
    assert dec.counters["resyncs"] == 0 and summary.samples_lost == 0


def test_float32_mpu6050_stream_decodes_to_the_recording() -> None:
    rec = _recording(200)
    summary, _, blocks = _run(rec, chip="mpu6050", fmt="float32")
    np.testing.assert_allclose(np.concatenate([b.samples for b in blocks]), rec.samples, rtol=1e-5, atol=1e-6)
    assert len(blocks) == 40  # 5 samples a frame


def test_hapt_user_nine_streams_as_device_imuanon_09() -> None:
    rec = load_hapt_user(9)
    summary, _, blocks = _run(rec, duration_s=10.0, device_id=hapt_device_id(9))
    assert blocks[0].device_id == f"{hapt_device_id(9):016x}" == "494d55414e4f4e09"
    assert summary.samples_sent == 500 and summary.clipped == 0
    np.testing.assert_allclose(np.concatenate([b.samples for b in blocks]), rec.samples[:500], atol=np.deg2rad(0.035))


def test_bad_settings_are_refused_with_the_way_out() -> None:
    with pytest.raises(DeviceError, match="probability like 0.05 or a period like 1/20"):
        FaultRule.parse("often")
    with pytest.raises(DeviceError, match="in \\[0, 1\\]"):
        FaultRule.parse("1.5")
    assert FaultRule.parse("1/20") == FaultRule(every=20) and str(FaultRule.parse("0.25")) == "0.25"
    with pytest.raises(DeviceError, match="no ±3 g range"):
        SimulatorConfig(device_id=1, chip="bmi270", acc_range_g=3)
    with pytest.raises(DeviceError, match="samples_per_frame must be 1..9"):
        Simulator(_recording(10), SimulatorConfig(device_id=1, fmt="float32", samples_per_frame=10), lambda f: True).run()
