"""The core's own arithmetic peak: single-thread fp32 matrix products through numpy's BLAS.

Every model figure is reported as a fraction of this number, measured in the same run on
the same core, so a figure taken on a busy or throttled machine still means something.
BLAS thread pools read their size once, at load, so the measurement runs in a subprocess
whose environment pins them to one thread before numpy is imported:
``python -m edge_runtime.benchmark.peak --cpu 1`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from edge_runtime.benchmark.device import pin_to, single_thread_env
from edge_runtime.errors import EdgeRuntimeError

SIZES = (128, 256, 384, 512, 768, 1024)
QUICK_SIZES = (256, 512)


class PeakError(EdgeRuntimeError):
    """The matmul peak could not be measured."""


def measure_matmul(sizes: tuple[int, ...], seconds_per_size: float, *, seed: int = 0) -> dict:
    """Best single-call GFLOP/s of ``n x n @ n x n`` fp32 products for each size.

    The best call, not the mean, is the peak: anything slower was disturbed by something else.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    by_size: dict[str, float] = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # first call pays for page faults and kernel dispatch
        best = float("inf")
        calls = 0
        deadline = time.perf_counter() + seconds_per_size
        while calls < 3 or (time.perf_counter() < deadline and calls < 100_000):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
            calls += 1
        by_size[str(n)] = round(2.0 * n**3 / best / 1e9, 2)
    best_size = max(by_size, key=by_size.get)
    return {"peak_gflops": by_size[best_size], "best_size": int(best_size), "gflops_by_size": by_size,
            "dtype": "float32", "blas_threads": 1}


def run_peak(*, cpu: int | None, quick: bool = False, timeout_s: float = 120.0) -> dict:
    """Measure the peak in a fresh single-threaded subprocess pinned to ``cpu``."""
    sizes = QUICK_SIZES if quick else SIZES
    seconds = 0.15 if quick else 0.6
    cmd = [sys.executable, "-m", "edge_runtime.benchmark.peak", "--sizes", ",".join(map(str, sizes)),
           "--seconds", str(seconds)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=single_thread_env())
    except subprocess.TimeoutExpired:
        raise PeakError(f"the matmul peak did not finish within {timeout_s:.0f} s; is the machine overloaded?") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PeakError(f"the matmul peak subprocess failed ({tail[0]}); check that numpy imports")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="single-thread fp32 matmul peak (run by imu-anon bench)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--seconds", type=float, default=0.6, help="time spent on each size")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to")
    args = parser.parse_args(argv)
    pin_to(args.cpu)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    print(json.dumps(measure_matmul(sizes, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
