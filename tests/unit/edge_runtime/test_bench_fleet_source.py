"""The capacity run's feeder reads like a reader thread: every frame due by a read, in one call."""

from __future__ import annotations

import time

import pytest

from edge_runtime.benchmark.fleet import Fleet, FleetSource
from edge_runtime.metrics import Metrics
from edge_runtime.sources import Inbox


class RecordingInbox(Inbox):
    def __init__(self) -> None:
        super().__init__(10_000, Metrics())
        self.calls: list[int] = []

    def offer_many(self, items) -> int:
        self.calls.append(len(items))
        return super().offer_many(items)


def test_the_feeder_hands_over_every_frame_due_by_each_read_in_one_call_stamped_with_its_due_time() -> None:
    wearables = Fleet(duration_s=1.0).wearables(20)
    source = FleetSource(wearables, frame_period_s=0.2, lead_s=0.0, read_tick_s=0.05)
    inbox = RecordingInbox()
    with source:
        source.start(inbox)
        deadline = time.monotonic() + 15
        while not source.done and time.monotonic() < deadline:
            time.sleep(0.02)
    items = inbox.drain(100_000)
    total = sum(len(w.frames) for w in wearables)
    assert len(items) == source.offered == total == sum(inbox.calls)
    assert len(inbox.calls) <= source.schedule_s / 0.05 + 3 < total  # several frames a read
    due = sorted(source.started_at + t + i * 0.2 / 20 for i, w in enumerate(wearables) for t in w.t_dev.tolist())
    assert [item.at for item in items] == pytest.approx(due, abs=1e-9)
