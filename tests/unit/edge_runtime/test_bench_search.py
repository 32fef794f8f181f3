"""The capacity search on a scripted machine: which sizes it tries, what it believes, what it reports.

The steps are a fake machine with a known capacity and scripted interference, and the search's
clock is the machine's own, so nothing here depends on timing.
"""

from __future__ import annotations

import pytest

from edge_runtime.benchmark.capacity import CapacityError, CapacitySettings
from edge_runtime.benchmark.search import next_fleet_size, retry_summary, search, stage_shares, worth_confirming

STEP_WALL_S = 12.0


class Machine:
    """Sustains ``capacity`` wearables; a size in ``spikes`` fails that many of its runs to a
    neighbour's burst first; a size in ``broken`` fails because the fleet's publisher breaks."""

    def __init__(self, capacity: int, *, spikes: dict[int, int] | None = None, broken: tuple[int, ...] = ()) -> None:
        self.capacity, self.spikes, self.broken = capacity, dict(spikes or {}), broken
        self.now = 0.0
        self.runs: list[int] = []

    def clock(self) -> float:
        return self.now

    def step(self, n: int) -> dict:
        self.now += STEP_WALL_S
        self.runs.append(n)
        if n in self.broken:
            return self._failed(n, {"publisher": "the fleet publisher failed: refused", "loss": "lost 90 window(s)"})
        if self.spikes.get(n, 0) > 0:
            self.spikes[n] -= 1
            return self._failed(n, {"latency": "p99 180.0 ms over the 100 ms budget"}, p99=180.0)
        if n > self.capacity:
            return self._failed(n, {"loss": "lost 12 window(s)", "latency": "p99 400.0 ms over the 100 ms budget"},
                                p99=400.0)
        return {"wearables": n, "ok": True, "why": "", "causes": [], "wall_s": STEP_WALL_S, "drops": 0,
                "p99_latency_ms": 50.0 + len(self.runs)}  # each run's own figure, to tell runs apart

    @staticmethod
    def _failed(n: int, why: dict[str, str], p99: float = 60.0) -> dict:
        return {"wearables": n, "ok": False, "why": "; ".join(why.values()), "causes": list(why),
                "wall_s": STEP_WALL_S, "drops": 12 if "loss" in why else 0, "p99_latency_ms": p99}


def _settings(**over) -> CapacitySettings:
    return CapacitySettings(**{"max_wearables": 4000, "time_limit_s": 1000.0, "tolerance": 0.05, **over})


def test_capacity_search_grows_then_bisects_to_the_tolerance() -> None:
    s = CapacitySettings(max_wearables=1000, tolerance=0.05)
    assert next_fleet_size(100, None, 100, s) == 130  # everything passed so far: grow 30 %
    assert next_fleet_size(0, 100, 100, s) == 50  # nothing passed yet: halve
    assert next_fleet_size(100, 130, 130, s) == 115  # bracketed: bisect
    assert next_fleet_size(100, 104, 104, s) is None  # bracket within 5 %: done
    assert next_fleet_size(1000, None, 1000, s) is None  # at the cap
    assert next_fleet_size(0, 1, 1, s) is None  # even one wearable fails


def test_stage_shares_add_up_and_overhead_is_everything_but_inference() -> None:
    step = {"stage_s": {"decode": 1.0, "window": 1.0, "infer": 6.0, "encode": 1.0, "publish": 0.5, "source": 0.5,
                        "other": 0.0}}
    shares, overhead = stage_shares(step)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["infer"] == pytest.approx(0.6)
    assert overhead == pytest.approx(0.4)


def test_a_size_that_fails_once_and_passes_when_run_again_lets_the_search_go_higher() -> None:
    machine = Machine(1000, spikes={650: 1})
    found = search(500, _settings(), machine.step, clock=machine.clock)
    at_650 = [s for s in found.steps if s["wearables"] == 650]
    assert [(s["ok"], s["retry"]) for s in at_650] == [(False, 0), (True, 1)]
    assert machine.runs[:4] == [500, 650, 650, 845]  # on from 650 as if it had passed the first time
    assert 950 <= found.largest_passing <= 1000 and found.first_failing > 1000
    assert found.limited_by == "budget"


def test_without_confirmation_one_burst_caps_the_figure_below_the_size_it_hit() -> None:
    machine = Machine(1000, spikes={650: 1})
    found = search(500, _settings(confirm_failures=0), machine.step, clock=machine.clock)
    assert found.first_failing == 650 and found.largest_passing < 650
    assert found.retried_sizes == 0 and all(s["retry"] == 0 for s in found.steps)


def test_a_size_that_fails_its_re_run_too_counts_as_failed() -> None:
    machine = Machine(600)
    found = search(500, _settings(), machine.step, clock=machine.clock)
    assert machine.runs[:3] == [500, 650, 650]
    assert found.first_failing <= 650 and 575 <= found.largest_passing <= 600
    # Every size above the capacity was run twice, and each counts once.
    failed = sorted({s["wearables"] for s in found.steps if not s["ok"]})
    assert all(machine.runs.count(n) == 2 for n in failed)
    assert found.retried_sizes == len(failed)


def test_a_size_passing_on_a_re_run_is_reported_with_the_passing_runs_figures() -> None:
    machine = Machine(700, spikes={650: 1})
    found = search(650, _settings(max_wearables=650), machine.step, clock=machine.clock)
    assert found.largest_passing == 650 and found.limited_by == "max_wearables"
    assert found.best is found.steps[-1]
    assert found.best["ok"] and found.best["retry"] == 1 and found.best["p99_latency_ms"] == 52.0


def test_confirm_failures_sets_how_many_re_runs_a_size_gets() -> None:
    machine = Machine(700, spikes={650: 2})
    found = search(650, _settings(max_wearables=650, confirm_failures=2), machine.step, clock=machine.clock)
    assert [(s["ok"], s["retry"]) for s in found.steps] == [(False, 0), (False, 1), (True, 2)]
    assert found.largest_passing == 650 and found.retried_sizes == 1
    machine = Machine(700, spikes={650: 2})
    found = search(650, _settings(max_wearables=650, confirm_failures=1), machine.step, clock=machine.clock)
    assert [(s["ok"], s["retry"]) for s in found.steps][:2] == [(False, 0), (False, 1)]
    assert found.first_failing == 650 and found.largest_passing < 650


def test_a_re_run_that_would_end_past_the_time_limit_is_not_started() -> None:
    machine = Machine(1000, spikes={650: 1})
    # 500 ends at 12 s, 650 at 24 s; a re-run needs 1.2 x 12 s more and only 6 s are left.
    found = search(500, _settings(time_limit_s=30.0), machine.step, clock=machine.clock)
    assert machine.runs == [500, 650]
    assert found.limited_by == "time_limit" and found.largest_passing == 500 and found.first_failing == 650
    assert found.retried_sizes == 0


def test_a_broken_publisher_is_not_a_reason_to_run_the_size_again() -> None:
    machine = Machine(1000, broken=(650,))
    found = search(500, _settings(), machine.step, clock=machine.clock)
    assert machine.runs.count(650) == 1 and found.first_failing <= 650
    assert not any(s["retry"] for s in found.steps if s["wearables"] == 650)


def test_only_failures_that_load_explains_are_worth_confirming() -> None:
    def step(ok: bool, *causes: str) -> dict:
        return {"ok": ok, "causes": list(causes)}

    assert worth_confirming(step(False, "latency"))
    assert worth_confirming(step(False, "overrun", "loss", "latency"))
    assert not worth_confirming(step(False, "publisher", "loss"))
    assert not worth_confirming(step(False, "sink"))
    assert not worth_confirming(step(True))
    assert not worth_confirming({"ok": False, "why": "a result from before causes were recorded"})


def test_confirm_failures_must_be_a_whole_number_of_re_runs() -> None:
    assert CapacitySettings().confirm_failures == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(CapacityError, match=r"confirm_failures \(--confirm-failures\) must be a whole number >= 0"):
            CapacitySettings(confirm_failures=bad)


def test_the_report_line_names_each_size_run_again_and_how_it_ended() -> None:
    steps = [{"wearables": 650, "ok": False, "retry": 0}, {"wearables": 650, "ok": True, "retry": 1},
             {"wearables": 845, "ok": False, "retry": 0}, {"wearables": 845, "ok": False, "retry": 1}]
    assert retry_summary(steps) == ("capacity: 2 failing size(s) run again to confirm the failure: "
                                    "650 passed on a re-run, 845 failed again")
    assert retry_summary(steps[:1]) == "" and retry_summary([]) == ""
