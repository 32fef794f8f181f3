"""The data path: source -> decode -> window -> anonymise -> sink, in one loop on one thread.

Source threads only move bytes into the inbox. This loop decodes them (per origin), pushes the
blocks into each device's stream, collects ready windows from every device into a micro-batch,
and runs the model when the batch is full or its oldest window has waited ``max_wait_ms``
(the latency budget). When the loop lags (frames already wait in the inbox), it takes them
all, up to a full batch, before the model runs: batches grow with the load instead of every
overdue window going through the model alone. Sinks see only the anonymiser's output.
``stop()`` (SIGTERM) ends the loop; what is pending is anonymised and flushed before ``run``
returns.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from edge_runtime.anonymiser import Anonymiser
from edge_runtime.config import PipelineSettings
from edge_runtime.decode import Decoders, Received
from edge_runtime.metrics import Metrics, PeriodicLog
from edge_runtime.signals import RawWindow
from edge_runtime.sinks import Sink
from edge_runtime.sources import Inbox, Source
from edge_runtime.stitching import Stitcher
from edge_runtime.streams import StreamTable

log = logging.getLogger(__name__)

DRAIN_ITEMS_PER_WINDOW = 4  # a lagging loop takes at most this many inbox items per batch slot


@dataclass(frozen=True, slots=True)
class Summary:
    counters: dict[str, int]
    latency_ms: tuple[float, float]  # window ready -> written to the sinks, p50 and p99
    inference_ms: tuple[float, float]  # one batched model call, p50 and p99
    elapsed_s: float


class Pipeline:
    def __init__(self, *, anonymiser: Anonymiser, sources: Sequence[Source], sinks: Sequence[Sink],
                 streams: StreamTable, decoders: Decoders, stitcher: Stitcher, metrics: Metrics,
                 settings: PipelineSettings, periodic: PeriodicLog | None = None) -> None:
        self.anonymiser, self.sources, self.sinks = anonymiser, list(sources), list(sinks)
        self.streams, self.decoders, self.stitcher, self.metrics = streams, decoders, stitcher, metrics
        self.settings, self.periodic = settings, periodic
        self._stop = threading.Event()
        self._pending: list[RawWindow] = []

    def stop(self) -> None:
        """Safe from a signal handler or another thread: the loop ends within ~0.1 s."""
        self._stop.set()

    def run(self) -> Summary:
        started = time.monotonic()
        inbox = Inbox(self.settings.inbox_max, self.metrics)
        for source in self.sources:
            source.start(inbox)
        max_wait = self.settings.max_wait_ms / 1000.0
        stopping = self._stop.is_set
        with _frozen_heap():
            while not stopping():
                pending = self._pending
                wait = 0.1 if not pending else min(0.1, pending[0].ready_at + max_wait - time.monotonic())
                item = inbox.get(timeout=wait)
                if item is not None:
                    self._ingest([item, *inbox.drain(self.settings.max_batch - len(pending) - 1)])
                    self._drain(inbox)
                self._anonymise(force=False)
                self._housekeeping()
                if item is None and inbox.empty() and all(not s.live and s.done for s in self.sources):
                    break
        self._anonymise(force=True)
        self.streams.finish()
        self._emit(self.stitcher.flush())
        for sink in self.sinks:
            sink.flush()
        return self.summary(time.monotonic() - started)

    def _ingest(self, items: list) -> None:
        """Decode items together (their int16 samples converted in one go), then window them in order."""
        push, pending = self.streams.push, self._pending
        for item, blocks in zip(items, self.decoders.decode_many(items)):
            at = item.at if isinstance(item, Received) else None
            for block in blocks:
                windows = push(block, at=at)
                if windows:
                    pending += windows

    def _drain(self, inbox: Inbox) -> None:
        """Ingest what already waits, until a batch is full, a batch's worth of items at a time.
        Bounded in items too, so frames that complete no window (HELLO, heartbeats) cannot hold
        a ready batch back for long."""
        max_batch = self.settings.max_batch
        budget = DRAIN_ITEMS_PER_WINDOW * max_batch
        while budget > 0 and len(self._pending) < max_batch:
            items = inbox.drain(min(budget, max_batch - len(self._pending)))
            if not items:
                return
            budget -= len(items)
            self._ingest(items)

    def _anonymise(self, force: bool) -> None:
        max_batch, max_wait = self.settings.max_batch, self.settings.max_wait_ms / 1000.0
        while self._pending and (force or len(self._pending) >= max_batch
                                 or time.monotonic() - self._pending[0].ready_at >= max_wait):
            batch, self._pending = self._pending[:max_batch], self._pending[max_batch:]
            try:
                windows, seconds = self.anonymiser.anonymise_windows(batch)
            except Exception as exc:  # onnxruntime failing on one batch must not end a months-long run
                self.metrics.inc("windows_failed", len(batch))
                log.error("inference failed on a batch of %d window(s), dropped: %s", len(batch),
                          str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                continue
            self.metrics.observe("inference_seconds", seconds)
            self.metrics.inc("inferences")
            self.metrics.inc("windows_anonymised", len(windows))
            if len(windows) < len(batch):
                self.metrics.inc("windows_nonfinite", len(batch) - len(windows))
            self._emit(self.stitcher.push_many(windows))
            now = time.monotonic()  # the whole batch went to the sinks in one go
            self.metrics.observe_many("window_latency_seconds", [now - w.ready_at for w in windows])

    def _emit(self, messages: list) -> None:
        """The messages of one pass to every sink in one call each: a sink encodes and sends a
        batch at a fraction of the per-message cost."""
        if not messages:
            return
        for sink in self.sinks:
            try:
                sink.write_many(messages)
            except OSError as exc:  # a full disk or a closed pipe: count it, keep the other sinks going
                self.metrics.inc("sink_errors")
                log.error("%s: cannot write %d message(s) (%s)", sink.name, len(messages), exc)
        self.metrics.inc("messages_out", len(messages))

    def _housekeeping(self) -> None:
        for sink in self.sinks:
            sink.poll()
        if self.stitcher.mode != "off":
            self._emit(self.stitcher.expire(time.monotonic() - self.streams.settings.silence_s))
        if self.periodic is not None:
            self.periodic.tick()

    def summary(self, elapsed_s: float) -> Summary:
        lat, inf = self.metrics.histograms["window_latency_seconds"], self.metrics.histograms["inference_seconds"]
        return Summary(counters=self.metrics.snapshot(), elapsed_s=elapsed_s,
                       latency_ms=(lat.percentile(50) * 1e3, lat.percentile(99) * 1e3),
                       inference_ms=(inf.percentile(50) * 1e3, inf.percentile(99) * 1e3))


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Everything alive when the loop starts (modules, the model, the configuration, the
    sources' state) is moved out of the collector's sight for the loop's lifetime.

    The loop allocates short-lived objects by the thousand a second, and the few that outlive
    a batch (windows waiting for one) are promoted until the collector makes a full pass, which
    otherwise walks every object of the process: tens of milliseconds in the pipeline thread, a
    visible p99. Objects frozen here are still freed when their last reference goes; only a
    reference cycle among them waits for :func:`gc.unfreeze`, done on the way out unless someone
    else had frozen objects first (that is theirs to undo)."""
    ours = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        yield
    finally:
        if ours:
            gc.unfreeze()
