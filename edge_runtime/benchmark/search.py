"""The capacity search: the largest fleet one core sustains, from steps of fixed fleet sizes.

The fleet grows by 30 % from a fraction of the inference ceiling until a step fails, then the
search bisects between the largest passing and the smallest failing size, within a time limit.

A failure is confirmed before the search believes it. Interference on a shared machine is
one-sided: a neighbour's burst can add latency and make a step lose windows, but it cannot make
the pipeline faster than the machine is. So one run that keeps every window within the budget
shows the machine sustains that size, while a failed run shows it only once it repeats. A size
that fails is run again, up to ``confirm_failures`` times; it counts as failed only when every
run failed, and a size that passes on a re-run is reported with the passing run's figures. A
failure that load cannot explain (the fleet's publisher broke, a sink refused writes) is not
re-run, and neither is one whose re-run would end past the time limit: the search stops there.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge_runtime.anonymiser import InferenceSettings
from edge_runtime.benchmark.capacity import LOAD_CAUSES, CapacitySettings, run_step
from edge_runtime.benchmark.fleet import Fleet

log = logging.getLogger(__name__)

FIRST_STEP = 0.6  # of the inference ceiling: the rest of the pipeline always costs something
TIME_MARGIN = 1.2  # a step is started only if this many times the last step's wall time is left


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchOutcome:
    largest_passing: int  # 0: no size passed
    first_failing: int | None  # the smallest size that failed; None: none did
    best: dict | None  # the passing run at ``largest_passing``
    steps: list[dict]  # every run in the order run, re-runs marked by ``retry`` >= 1
    limited_by: str  # "budget", "max_wearables" or "time_limit"
    retried_sizes: int  # sizes run again to confirm a failure


def next_fleet_size(lo: int, hi: int | None, n: int, settings: CapacitySettings) -> int | None:
    """Grow by 30 % until a step fails, halve until one passes, then bisect; None: done."""
    if hi is None:
        return None if lo >= settings.max_wearables else min(settings.max_wearables, max(lo + 1, math.ceil(lo * 1.3)))
    if lo == 0:
        return None if n <= settings.min_wearables else max(settings.min_wearables, n // 2)
    if hi - lo <= max(1, int(settings.tolerance * lo)):
        return None
    return (lo + hi) // 2


def worth_confirming(step: dict) -> bool:
    """A failed step whose every cause load can explain (latency, lost windows, overrun): a
    broken publisher or sink would fail the re-run the same way."""
    causes = step.get("causes") or ()
    return not step["ok"] and bool(causes) and set(causes) <= LOAD_CAUSES


def search(first: int, settings: CapacitySettings, step: Callable[[int], dict], *,
           clock: Callable[[], float] = time.monotonic) -> SearchOutcome:
    """Run ``step(n)`` (one step's figures, as :func:`run_step` gives them) at the sizes the
    search chooses, starting at ``first``, confirming failures as the module says."""
    deadline = clock() + settings.time_limit_s

    def time_for(last: dict) -> bool:
        return clock() + TIME_MARGIN * last["wall_s"] <= deadline

    steps: list[dict] = []
    lo, hi, best, retried = 0, None, None, 0
    n: int | None = first
    limited = ""
    while n is not None:
        result = {**step(n), "retry": 0}
        steps.append(result)
        log.info("capacity: %d wearables -> %s", n, "ok" if result["ok"] else result["why"])
        for attempt in range(1, settings.confirm_failures + 1):
            if not worth_confirming(result):
                break
            if not time_for(result):
                log.info("capacity: no time left to run %d wearables again; the failure stands unconfirmed", n)
                limited = "time_limit"
                break
            if attempt == 1:
                retried += 1
            result = {**step(n), "retry": attempt}
            steps.append(result)
            log.info("capacity: %d wearables again (%d of %d) -> %s", n, attempt, settings.confirm_failures,
                     "ok" if result["ok"] else result["why"])
        if result["ok"]:
            lo, best = n, result
        else:
            hi = n if hi is None else min(hi, n)
        if limited:
            break
        n = next_fleet_size(lo, hi, n, settings)
        if n is not None and not time_for(result):
            limited = "time_limit"
            break
    if limited:
        log.info("capacity: stopping at the %.0f s time limit", settings.time_limit_s)
    else:
        limited = "max_wearables" if hi is None else "budget"
    return SearchOutcome(largest_passing=lo, first_failing=hi, best=best, steps=steps, limited_by=limited,
                         retried_sizes=retried)


def retry_summary(steps: list[dict]) -> str:
    """One line on the sizes run again to confirm a failure and how each ended; "" if none was."""
    passed: dict[int, bool] = {}
    for step in steps:
        if step.get("retry"):
            passed[step["wearables"]] = passed.get(step["wearables"], False) or step["ok"]
    if not passed:
        return ""
    told = ", ".join(f"{n} {'passed on a re-run' if ok else 'failed again'}" for n, ok in passed.items())
    return f"capacity: {len(passed)} failing size(s) run again to confirm the failure: {told}"


def stage_shares(step: dict) -> tuple[dict[str, float], float]:
    """Each stage's share of the step's CPU time, and the pipeline overhead (all but inference)."""
    stages = step["stage_s"]
    total = sum(stages.values())
    if total <= 0:
        return {}, math.nan
    shares = {k: round(v / total, 4) for k, v in stages.items()}
    return shares, round(1.0 - stages["infer"] / total, 4)


def find_capacity(model: str | Path, *, ceiling_wps: float, rate_hz: float, hop: int, sink_url: str, sink: str,
                  settings: CapacitySettings, inference: InferenceSettings, broker_url: str | None = None,
                  publisher_cpus: tuple[int, ...] = ()) -> dict:
    """The largest fleet that passed, with its figures and every step tried.

    The first step is 60 % of the inference ceiling (``ceiling_wps`` windows/s over the
    windows/s of one wearable), since the rest of the pipeline always costs something.
    """
    per_wearable = rate_hz / hop
    ceiling = max(1, int(ceiling_wps / per_wearable))
    fleet = Fleet(settings.step_s, rate_hz)
    first = min(settings.max_wearables, max(settings.min_wearables, int(FIRST_STEP * ceiling)))
    with tempfile.TemporaryDirectory(prefix="imu-anon-bench-") as tmp:
        secret = str(Path(tmp) / "pseudonym.key")

        def one_step(n: int) -> dict:
            return run_step(model, n, fleet, sink_url=sink_url, settings=settings, inference=inference,
                            secret_file=secret, broker_url=broker_url, publisher_cpus=publisher_cpus)

        found = search(first, settings, one_step)
    best, steps = found.best, found.steps
    shares, overhead = stage_shares(best) if best else ({}, math.nan)
    return {
        "wearables_per_core": found.largest_passing,
        "p99_latency_ms": best["p99_latency_ms"] if best else math.nan,
        "p50_latency_ms": best["p50_latency_ms"] if best else math.nan,
        "drops": best["drops"] if best else (steps[-1]["drops"] if steps else 0),
        "budget_ms": settings.budget_ms,
        "limited_by": found.limited_by,
        "first_failing": found.first_failing,
        "confirm_failures": settings.confirm_failures,
        "retried_sizes": found.retried_sizes,
        "inference_ceiling_wearables": ceiling,
        "sink": sink,
        "source": settings.source,
        "payload_format": settings.payload_format,
        "step_s": settings.step_s,
        "windows_per_wearable_s": per_wearable,
        "stage_share": shares,
        "overhead_share": overhead,
        "steps": steps,
    }
