"""Sources and sinks by URL: clear errors for bad URLs, and sinks take nothing but anonymised windows."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.decode import Received
from edge_runtime.errors import ConfigError, SinkError, SourceError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import Backoff, MqttSettings, parse_url
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow, RawWindow
from edge_runtime.sinks import PublishSettings, open_sink
from edge_runtime.sources import Inbox, RecordingSource, SourceContext, open_source

CTX = SourceContext(model_rate_hz=50.0, metrics=Metrics())
SAMPLE = Path(__file__).resolve().parents[3] / "data" / "samples" / "hapt-user09.csv"


def sink(url: str):
    return open_sink(url, publish=PublishSettings(), mqtt=MqttSettings(), metrics=Metrics(),
                     status=lambda state, fmt, topic: b"{}")


def window(index: int = 0) -> AnonymisedWindow:
    values = np.vstack([np.linspace(0.9, 1.1, 4), np.linspace(0, 0.3, 4)]).astype(np.float32)
    return AnonymisedWindow(stream="s-00ff", segment=0, index=index, t0=10.0, rate_hz=50.0,
                            channels=("acc_mag", "gyro_mag"), units=("g", "rad/s"), values=values,
                            model="abcdefabcdef", ready_at=0.0, token=_ANONYMISER_TOKEN)


def test_an_unknown_source_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        open_source("tcp://127.0.0.1:9", CTX)
    for known in ("serial://", "mqtt://", "file:", "npz:", "frames:", "loop:"):
        assert known in str(info.value)


def test_an_unknown_sink_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        sink("kafka://broker/topic")
    for known in ("mqtt://", "file:", "stdout:", "serial://", "null:"):
        assert known in str(info.value)


def test_unknown_url_parameters_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['baudrate'\]"):
        open_source("serial:///dev/ttyUSB0?baudrate=9600", CTX)
    with pytest.raises(ConfigError, match="speed must be a positive number or 'max'"):
        open_source(f"file:{SAMPLE}?speed=fast", CTX)
    with pytest.raises(ConfigError, match="acc_unit"):
        open_source("serial:///dev/ttyUSB0?format=csv&acc=furlongs", CTX)


def test_a_missing_recording_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot read"):
        open_source("file:/nonexistent/rec.csv", CTX)


def test_a_recording_is_cut_into_device_sized_blocks_with_its_own_clock() -> None:
    source = open_source(f"file:{SAMPLE}?block=50&device=w9", CTX)
    assert isinstance(source, RecordingSource) and not source.live
    blocks = list(source.blocks())
    assert len(blocks) == -(-16244 // 50) and blocks[1].t0 == pytest.approx(1.0)
    assert {b.device_id for b in blocks} == {"w9"} and [b.seq for b in blocks[:3]] == [0, 1, 2]
    assert sum(len(b) for b in blocks) == 16244


def test_mqtt_urls_carry_host_port_topic_and_options() -> None:
    settings, topic, extra = parse_url("mqtts://broker.local/imu/+/raw?qos=0&ca=/etc/ssl/certs/ca-certificates.crt",
                                       MqttSettings(), {"qos"})
    assert (settings.host, settings.port, settings.tls, topic, extra) == ("broker.local", 8883, True, "imu/+/raw",
                                                                           {"qos": "0"})
    settings, topic, _ = parse_url("mqtt://127.0.0.1:1999/imu/%23", MqttSettings(), set())
    assert (settings.port, topic) == (1999, "imu/#")
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_url("mqtt://h/t?password=x", MqttSettings(), set())


def test_mqtt_5_is_the_default_and_3_1_1_can_be_asked_for() -> None:
    assert MqttSettings().protocol == "5"
    settings, _, _ = parse_url("mqtt://h/imu/anon/{stream}?protocol=3.1.1", MqttSettings(), set())
    assert settings.protocol == "3.1.1"
    with pytest.raises(ConfigError, match="protocol must be one of 5, 3.1.1"):
        parse_url("mqtt://h/t?protocol=3.1", MqttSettings(), set())


def test_an_mqtt_sink_topic_must_name_the_stream() -> None:
    with pytest.raises(ConfigError, match="must contain {stream}"):
        sink("mqtt://127.0.0.1:1883/imu/anon/all")
    with pytest.raises(ConfigError, match="wildcards"):
        sink("mqtt://127.0.0.1:1883/imu/+/{stream}")


def test_a_shared_subscription_source_is_refused_because_it_splits_wearers() -> None:
    with pytest.raises(ConfigError, match=r"\$share"):
        open_source("mqtt://127.0.0.1:1883/$share/g/imu/+/raw", CTX)


@pytest.mark.parametrize("url", ["stdout:", "null:", "null:?format=binary", "file:{tmp}/out.jsonl"])
def test_every_sink_refuses_raw_windows_and_arrays(url: str, tmp_path: Path) -> None:
    raw = RawWindow(device_id="d", stream="s-1", segment=0, index=0, t0=0.0, rate_hz=50.0,
                    samples=np.ones((6, 128), np.float32), ready_at=0.0)
    with sink(url.format(tmp=tmp_path)) as out:
        for bad in (raw, raw.samples, {"values": [[1.0]]}):
            with pytest.raises(SinkError, match="only AnonymisedWindow"):
                out.write(bad)


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_the_null_sink_encodes_in_the_format_it_is_given_before_discarding(fmt: str) -> None:
    from edge_runtime import payload

    windows = [window(i) for i in range(3)]
    with sink(f"null:?format={fmt}") as out:
        out.write_many(windows)
        assert out.bytes_discarded == sum(len(payload.encode(w, fmt)) for w in windows)
    with sink("null:") as out:
        out.write_many(windows)
        assert out.bytes_discarded == 0  # plain null: discards without encoding
    for bad in ("null:?format=xml", "null:?speed=2"):
        with pytest.raises(ConfigError, match="null"):
            sink(bad)


def test_the_file_sink_writes_one_json_object_per_window(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with sink(f"file:{path}") as out:
        out.write(window(0))
        out.write(window(1))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and rows[0]["stream"] == "s-00ff"
    assert rows[0]["values"][0] == pytest.approx([0.9, 0.966667, 1.033333, 1.1], abs=1e-6)


def test_the_csv_file_sink_writes_one_row_per_sample(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    with sink(f"file:{path}") as out:
        out.write(window(3))
    lines = path.read_text().splitlines()
    assert lines[0] == "stream,segment,index,t,acc_mag,gyro_mag"
    assert lines[1] == "s-00ff,0,3,10.000000,0.9,0" and lines[4].startswith("s-00ff,0,3,10.060000,1.1,0.3")


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    import random

    backoff = Backoff(0.5, 4.0, jitter=0.25, rng=random.Random(0))
    delays = [backoff.next() for _ in range(6)]
    for delay, base in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert base * 0.75 <= delay <= base * 1.25
    assert len(set(delays)) == 6
    backoff.reset()
    assert backoff.next() <= 0.625


def test_a_full_inbox_drops_what_live_sources_offer_and_counts_it() -> None:
    metrics = Metrics()
    inbox = Inbox(3, metrics)
    assert inbox.offer("a") and inbox.offer_many(["b", "c", "d", "e"]) == 2 and not inbox.offer("f")
    assert metrics.get("inbox_dropped") == 3 and inbox.qsize() == 3
    assert [inbox.get(0.0), inbox.get(0.0)] == ["a", "b"]
    assert inbox.drain(10) == ["c"] and inbox.empty()
    assert inbox.get(0.0) is None and inbox.drain(10) == []


def test_drain_takes_the_oldest_items_up_to_its_bound_in_one_call() -> None:
    inbox = Inbox(100, Metrics())
    inbox.offer_many(list(range(10)))
    assert inbox.drain(4) == [0, 1, 2, 3] and inbox.drain(0) == [] and inbox.drain(100) == list(range(4, 10))


def test_a_waiting_pipeline_is_woken_by_an_offer_and_times_out_without_one() -> None:
    inbox = Inbox(10, Metrics())
    started = time.monotonic()
    assert inbox.get(0.05) is None and time.monotonic() - started >= 0.045
    threading.Timer(0.05, inbox.offer_many, args=(["x", "y"],)).start()
    started = time.monotonic()
    assert inbox.get(5.0) == "x" and time.monotonic() - started < 2.0
    assert inbox.get(0.0) == "y"


def test_a_recording_waits_for_room_and_gives_up_once_stopped() -> None:
    inbox, stop = Inbox(1, Metrics()), threading.Event()
    assert inbox.put("a", stop)
    threading.Timer(0.05, inbox.get, args=(0.0,)).start()
    started = time.monotonic()
    assert inbox.put("b", stop) and time.monotonic() - started < 2.0  # woken when the pipeline took "a"
    threading.Timer(0.05, stop.set).start()
    assert not inbox.put("c", stop) and inbox.drain(5) == ["b"]
    assert not inbox.put("d", stop)  # stopped: refused even with room, as before


def test_received_is_cheap_stamped_on_arrival_and_its_repr_shows_neither_bytes_nor_device() -> None:
    before = time.monotonic()
    item = Received("mqtt:imu/w1/raw", b"secret-bytes", "mqtt", device="0102030405060708")
    assert before <= item.at <= time.monotonic()
    assert Received("o", b"", "frames", at=12.5).at == 12.5
    assert "secret" not in repr(item) and "0102030405060708" not in repr(item) and "bytes=12" in repr(item)
