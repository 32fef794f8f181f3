"""The decoder table when more origins (MQTT topics) come than it holds: first come, first served.

A new topic takes the place of the least recently heard one only if that one has been silent for
the idle time; otherwise its message is dropped and counted, so a flood of topics never costs
the wearables already heard their HELLO. Time is each message's arrival time (``Received.at``),
given here, so nothing sleeps."""

from __future__ import annotations

import logging

import pytest
from runtime_helpers import device_name, frames_for, signal

from edge_runtime.decode import ORIGIN_IDLE_S, Decoders, Received
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics

SAMPLES = signal(8, seed=2)  # one SAMPLES frame


class Wearable:
    """One MQTT wearable on its own topic: its HELLO or its next SAMPLES message (the next sequence
    number: the decoder drops a repeated one as a duplicate), heard at a given time."""

    def __init__(self, n: int) -> None:
        self.device = 0x00A1B2C3D4100000 + n
        self.name = device_name(self.device)
        self.sent = 0

    def _heard(self, data: bytes, at: float) -> Received:
        return Received(f"mqtt:imu/{self.name}/raw", data, "mqtt", self.name, at=at)

    def hello(self, at: float) -> Received:
        return self._heard(frames_for(SAMPLES, self.device)[0], at)

    def frame(self, at: float) -> Received:
        self.sent += 1
        return self._heard(frames_for(SAMPLES, self.device, seq0=self.sent, first_index=8 * self.sent)[1], at)


def table(max_origins: int) -> tuple[Decoders, Metrics]:
    metrics = Metrics()
    return Decoders(metrics, lambda d: f"s-{len(d)}", max_origins), metrics


def decodes(decoders: Decoders, wearable: Wearable, at: float) -> bool:
    """Whether the wearable's SAMPLES message, heard at ``at``, becomes its block."""
    blocks = decoders.decode(wearable.frame(at))
    return [(b.device_id, len(b)) for b in blocks] == [(wearable.name, len(SAMPLES))]


def test_a_flood_of_new_topics_is_refused_counted_and_logged_once_while_live_ones_keep_decoding(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_runtime.decode")
    decoders, metrics = table(4)
    live, flood = [Wearable(n) for n in range(4)], [Wearable(n) for n in range(100, 400)]
    for wearable in live:
        decoders.decode(wearable.hello(0.0))
    for second, newcomer in enumerate(flood, start=1):  # one new topic a second, for five minutes
        assert decoders.decode(newcomer.hello(second)) == []
        assert all(decodes(decoders, wearable, second) for wearable in live)
    assert metrics.get("origins_refused") == len(flood) and metrics.get("origins_evicted") == 0
    assert metrics.get("awaiting_config") == 0 and metrics.get("frames_ok") == 4 + 4 * len(flood)
    [warning] = [r for r in caplog.records if r.name == "edge_runtime.decode"]
    message = warning.getMessage()
    assert warning.levelno == logging.WARNING and "origins_refused" in message
    assert "raise streams.max_devices" in message and "streams.shard" in message
    assert not any(w.name in message for w in live + flood) and "imu/" not in message  # topics hold device ids


def test_an_origin_silent_for_the_idle_time_gives_its_place_to_a_new_one_and_its_counts_are_kept() -> None:
    decoders, metrics = table(2)
    gone, staying, newcomer = Wearable(1), Wearable(2), Wearable(3)
    for wearable in (gone, staying):
        decoders.decode(wearable.hello(0.0))
        assert decodes(decoders, wearable, 1.0)
    assert decodes(decoders, staying, ORIGIN_IDLE_S - 1)
    assert decoders.decode(newcomer.hello(ORIGIN_IDLE_S + 0.5)) == []  # gone: silent 59.5 s, not yet
    assert metrics.get("origins_refused") == 1 and metrics.get("origins_evicted") == 0
    decoders.decode(newcomer.hello(ORIGIN_IDLE_S + 1))  # gone: silent 60 s
    assert metrics.get("origins_evicted") == 1
    assert decodes(decoders, newcomer, ORIGIN_IDLE_S + 2) and decodes(decoders, staying, ORIGIN_IDLE_S + 2)
    assert metrics.get("frames_ok") == 2 + 2 + 1 + 1 + 2  # the evicted decoder's frames still count
    # Back after a minute, the gone wearable waits for a place as any new topic does.
    assert decoders.decode(gone.frame(ORIGIN_IDLE_S + 3)) == []
    assert metrics.get("origins_refused") == 2


def test_the_least_recently_heard_of_the_silent_origins_leaves_first() -> None:
    decoders, metrics = table(3)
    oldest, older, old = Wearable(1), Wearable(2), Wearable(3)
    for at, wearable in ((0.0, oldest), (5.0, older), (10.0, old)):
        decoders.decode(wearable.hello(at))
    later = 10.0 + ORIGIN_IDLE_S
    for n in (4, 5):  # all three silent: two places are needed
        decoders.decode(Wearable(n).hello(later))
    assert metrics.get("origins_evicted") == 2
    assert decodes(decoders, old, later)  # the most recently heard of them kept its HELLO


def test_a_refused_topic_gets_in_with_its_next_message_once_a_place_frees_up() -> None:
    decoders, metrics = table(2)
    first, second, late = Wearable(1), Wearable(2), Wearable(3)
    decoders.decode(first.hello(0.0))
    decoders.decode(second.hello(0.0))
    for at in range(0, 60, 2):  # the late wearable repeats its HELLO every 2 s; the first falls silent at 0
        decoders.decode(late.hello(at))
        assert decodes(decoders, second, at + 1)
    assert metrics.get("origins_refused") == 30 and not decodes(decoders, late, 59.0)
    decoders.decode(late.hello(60.0))  # the first wearable has been silent for the idle time
    assert decodes(decoders, late, 61.0) and decodes(decoders, second, 61.0)
    assert metrics.get("origins_evicted") == 1 and metrics.get("origins_refused") == 31


@pytest.mark.parametrize("idle_s", [0, -1.0, "60"])
def test_an_idle_time_that_is_not_a_positive_number_is_refused(idle_s: object) -> None:
    with pytest.raises(ConfigError, match="idle time"):
        Decoders(Metrics(), str, 4, idle_s=idle_s)  # type: ignore[arg-type]


def test_a_topic_that_left_the_table_and_comes_back_is_warned_about_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_runtime.decode")
    decoders, _ = table(1)
    impostor, owner, newcomer = Wearable(1), Wearable(2), Wearable(3)

    def on_owners_topic(item: Received) -> Received:  # the impostor's frames, on the owner's topic
        return Received(f"mqtt:imu/{owner.name}/raw", item.data, "mqtt", owner.name, at=item.at)

    def mismatch_warnings() -> int:
        return sum("carry another device id" in r.getMessage() for r in caplog.records)

    for at in (0.0, 1.0):
        decoders.decode(on_owners_topic(impostor.hello(at)))
        assert decoders.decode(on_owners_topic(impostor.frame(at))) == []
    assert mismatch_warnings() == 1  # once per topic while it stays in the table
    decoders.decode(newcomer.hello(1.0 + ORIGIN_IDLE_S))  # the owner's topic, silent a minute, leaves
    decoders.decode(on_owners_topic(impostor.hello(1.0 + 2 * ORIGIN_IDLE_S)))  # the newcomer leaves in turn
    assert decoders.decode(on_owners_topic(impostor.frame(1.0 + 2 * ORIGIN_IDLE_S))) == []
    assert mismatch_warnings() == 2


def test_an_origin_that_took_a_place_can_itself_give_it_up_once_silent() -> None:
    decoders, metrics = table(1)
    first, second, third = Wearable(1), Wearable(2), Wearable(3)
    decoders.decode(first.hello(0.0))
    decoders.decode(second.hello(ORIGIN_IDLE_S))  # first silent a minute: second takes its place
    decoders.decode(third.hello(2 * ORIGIN_IDLE_S))  # and second, silent a minute since, gives it to third
    assert metrics.get("origins_evicted") == 2 and metrics.get("origins_refused") == 0
    assert decodes(decoders, third, 2 * ORIGIN_IDLE_S + 1)
