"""How many windows one model call takes, found on the gateway itself.

Batching is not always faster. A small model (``lean-wide``: 5.6 MFLOP a window) runs 1.9x
faster per window in batches of 32 than alone. The paper's architecture (54 MFLOP, 100 filters)
gains nothing from batches, and on the bench machine it has run up to 20 % slower per window in
batches of 16-32 than in fours (a batch's activations no longer fit the core's L2 cache; other
runs showed no difference). Which side a model falls on depends on the CPU, so the anonymiser
measures it where it runs: the first full batches are run in chunks of each candidate size in
turn, and once every candidate has been timed ``ROUNDS`` times the fastest (median seconds per
window) is kept for good, if it beats whole batches by 5 %. The outputs do not depend on the
chunk (onnxruntime computes each window alone; a test checks it bit for bit), so tuning changes
speed only. ``inference.chunk = N`` fixes the size and skips the tuning.
"""

from __future__ import annotations

import logging
import statistics

log = logging.getLogger(__name__)

CANDIDATES = (4, 8, 16, 0)  # windows per call; 0: the whole batch in one call
MIN_BATCH = 16  # only batches this large teach anything: below it every candidate is one call
ROUNDS = 5  # timings per candidate before choosing
MARGIN = 0.95  # a chunk must take under this fraction of a whole batch's time per window


class ChunkTuner:
    """``chunk_for(n)``: how many windows each call takes for a batch of ``n``; ``record`` after
    the batch with its model seconds. ``fixed`` > 0: always that many (no tuning)."""

    def __init__(self, fixed: int = 0) -> None:
        self.chosen: int | None = fixed if fixed > 0 else None
        self._times: dict[int, list[float]] = {c: [] for c in CANDIDATES}
        self._next = 0  # the candidate the next full batch tries

    def chunk_for(self, n: int) -> int:
        if self.chosen is not None:
            return self.chosen or n
        if n < MIN_BATCH:
            return n
        return CANDIDATES[self._next] or n

    def record(self, n: int, chunk: int, seconds: float) -> None:
        """The model time of a batch of ``n`` run ``chunk`` windows at a time."""
        if self.chosen is not None or n < MIN_BATCH:
            return
        candidate = CANDIDATES[self._next]
        if (candidate or n) != chunk:  # not the batch chunk_for planned (a caller's own chunking)
            return
        self._times[candidate].append(seconds / n)
        self._next = (self._next + 1) % len(CANDIDATES)
        if all(len(t) >= ROUNDS for t in self._times.values()):
            medians = {c: statistics.median(t) for c, t in self._times.items()}
            fastest = min(medians, key=medians.__getitem__)
            # Whole batches stay unless a chunk is clearly faster: timings on a busy core scatter
            # by a few per cent, and a chunk picked on noise would cost what it claims to save.
            self.chosen = fastest if medians[fastest] < MARGIN * medians[0] else 0
            log.info("inference: %s per call on this CPU (median us per window: %s)",
                     "whole batches" if self.chosen == 0 else f"{self.chosen} windows",
                     ", ".join(f"{'whole' if c == 0 else c}: {1e6 * m:.0f}" for c, m in medians.items()))
