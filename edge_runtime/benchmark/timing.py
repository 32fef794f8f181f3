"""Latency percentiles and throughput of any callable, bounded in calls and in time.

Numpy only, so the torch reference subprocess times its model with the same arithmetic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

BATCHES = (1, 8, 32, 128)
MAX_CALLS = 200_000  # a bound on every loop, whatever the clock says


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingPlan:
    """How long each measurement runs; ``quick`` trades precision for a ~10x shorter run."""

    warmup_calls: int = 20
    latency_s: float = 3.0
    throughput_s: float = 1.5
    min_calls: int = 5
    batches: tuple[int, ...] = BATCHES

    def __post_init__(self) -> None:
        if self.latency_s <= 0 or self.throughput_s <= 0:
            raise ValueError("latency_s and throughput_s must be positive")
        if self.warmup_calls < 0 or self.min_calls < 1:
            raise ValueError("warmup_calls must be >= 0 and min_calls >= 1")
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batches must be positive sizes, got {self.batches}")

    @classmethod
    def quick(cls) -> "TimingPlan":
        return cls(warmup_calls=5, latency_s=0.3, throughput_s=0.15, min_calls=3)


def percentiles_ms(seconds: np.ndarray) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4), "p99": round(float(p99), 4),
            "mean": round(float(ms.mean()), 4)}


def time_calls(fn: Callable[[], Any], seconds: float, *, min_calls: int, warmup: int) -> np.ndarray:
    """Per-call wall times (s) of ``fn()``, for ``seconds`` (at least ``min_calls`` calls)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while len(times) < MAX_CALLS:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        if t1 >= deadline and len(times) >= min_calls:
            break
    return np.asarray(times)


def measure(fn: Callable[[np.ndarray], Any], make_input: Callable[[int], np.ndarray], plan: TimingPlan) -> dict:
    """Latency at batch 1 and windows/s at every batch size of ``plan``.

    Windows/s is the batch over the *median* call time: on a core shared with other work the
    mean is dragged by calls the scheduler pre-empted, which says nothing about the model. The
    latency percentiles keep every call, pre-empted ones included: that is what a wearer waits."""
    x1 = make_input(1)
    lat = time_calls(lambda: fn(x1), plan.latency_s, min_calls=plan.min_calls, warmup=plan.warmup_calls)
    throughput: dict[str, float] = {}
    for batch in plan.batches:
        xb = make_input(batch)
        per_call = time_calls(lambda: fn(xb), plan.throughput_s, min_calls=plan.min_calls,
                              warmup=max(1, plan.warmup_calls // batch))
        throughput[str(batch)] = round(batch / float(np.median(per_call)), 2)
    return {"latency_ms": percentiles_ms(lat), "latency_calls": int(lat.size), "throughput_wps": throughput}


def with_flops(result: dict, flops_per_window: int, peak_gflops: float | None) -> dict:
    """Add achieved GFLOP/s (at the best batch size) and its fraction of the core's peak."""
    wps = result["throughput_wps"]
    best_batch = max(wps, key=wps.get)
    gflops = wps[best_batch] * flops_per_window / 1e9
    out = dict(result)
    out["flops_per_window"] = int(flops_per_window)
    out["best_batch"] = int(best_batch)
    out["gflops"] = round(gflops, 3)
    out["gflops_by_batch"] = {b: round(v * flops_per_window / 1e9, 3) for b, v in wps.items()}
    out["fraction_of_peak"] = round(gflops / peak_gflops, 4) if peak_gflops else None
    return out
