"""Windows per second of an exported file on this machine, as a gateway runs it (one thread).

A quick figure for the export summary and the model card; ``imu-anon bench`` is the full
latency and throughput measurement.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def windows_per_second(path: str | Path, windows: np.ndarray, *, batch: int = 1, seconds: float = 1.0,
                       max_runs: int = 20_000) -> float:
    """Throughput of the file at ``path`` over ``windows`` (raw, its input units), single-threaded,
    measured for about ``seconds`` after one warm-up run (at most ``max_runs`` runs)."""
    from edge_runtime.anonymiser import Anonymiser, InferenceSettings

    model = Anonymiser.open(path, InferenceSettings(intra_op_threads=1), verify=True)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    batches = [windows[i:i + batch] for i in range(0, len(windows) - batch + 1, batch)] or [windows]
    model.anonymise(batches[0])  # warm-up: the first run allocates
    done, runs = 0, 0
    started = time.perf_counter()
    while runs < max_runs:
        chunk = batches[runs % len(batches)]
        model.anonymise(chunk)
        done += len(chunk)
        runs += 1
        if time.perf_counter() - started >= seconds:
            break
    return done / (time.perf_counter() - started)
