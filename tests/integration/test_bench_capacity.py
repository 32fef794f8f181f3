"""The capacity step through a real Mosquitto: every window published, latency measured."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from model_factory import build_model

from edge_runtime.benchmark.broker import LocalBroker
from edge_runtime.benchmark.capacity import CapacitySettings, run_step
from edge_runtime.benchmark.fleet import Fleet, expected_windows
from edge_runtime.benchmark.inference import bench_settings
from edge_runtime.benchmark.search import find_capacity, worth_confirming

pytestmark = pytest.mark.integration


def test_every_window_of_every_wearable_reaches_the_broker(tmp_path: Path, broker) -> None:
    model = build_model(tmp_path / "m.onnx", hop=10)
    received: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-test-sub")
    client.on_connect = lambda c, *a: c.subscribe("imu-anon-bench/#", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, msg: received.append(msg.payload)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        fleet = Fleet(4.0)
        step = run_step(model, 3, fleet, sink_url=f"{broker.url}/imu-anon-bench/{{stream}}?qos=1",
                        settings=CapacitySettings(step_s=4.0), inference=bench_settings(1),
                        secret_file=str(tmp_path / "key"))
        expected = 3 * expected_windows(200, 128, 10)
        assert step["expected_windows"] == expected and step["published_windows"] == expected
        assert step["drops"] == 0 and step["ok"], step["why"]
        deadline = threading.Event()
        for _ in range(100):  # bounded: at most 10 s for the last messages to arrive
            if len(received) >= expected:
                break
            deadline.wait(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    windows = [json.loads(p) for p in received]
    assert len(windows) == expected
    assert len({w["stream"] for w in windows}) == 3
    assert all(len(w["values"]) == 2 and len(w["values"][0]) == 128 for w in windows)
    assert 0 < step["p50_latency_ms"] <= step["p99_latency_ms"]


def test_the_search_stops_at_the_cap_when_every_step_passes(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx", hop=10)
    with LocalBroker() as local:
        cap = find_capacity(model, ceiling_wps=1e6, rate_hz=50.0, hop=10, sink_url=f"{local.url}/imu-anon-bench/{{stream}}",
                            sink="mqtt", settings=CapacitySettings(step_s=4.0, max_wearables=4, time_limit_s=60),
                            inference=bench_settings(1))
    assert cap["wearables_per_core"] == 4 and cap["limited_by"] == "max_wearables"
    assert [(s["wearables"], s["retry"], s["causes"]) for s in cap["steps"]] == [(4, 0, [])]
    assert cap["drops"] == 0 and cap["sink"] == "mqtt"
    assert cap["confirm_failures"] == 1 and cap["retried_sizes"] == 0


def test_a_fleet_over_mqtt_is_read_by_the_gateways_own_source(tmp_path: Path) -> None:
    """--source mqtt: the frames go publisher process -> Mosquitto -> the gateway's MQTT source;
    every window comes out, the reader's CPU is the source stage, latency counts from when
    each frame was due."""
    model = build_model(tmp_path / "m.onnx", hop=10)
    with LocalBroker() as local:
        step = run_step(model, 5, Fleet(4.0), sink_url="null:", settings=CapacitySettings(step_s=4.0, source="mqtt"),
                        inference=bench_settings(1), secret_file=str(tmp_path / "key"), broker_url=local.url)
    expected = 5 * expected_windows(200, 128, 10)
    assert step["ok"], step["why"]
    assert step["source"] == "mqtt" and step["expected_windows"] == expected and step["published_windows"] == expected
    assert step["stage_s"]["source"] > 0 and step["stage_s"]["publish"] >= 0
    assert 0 <= step["feeder_max_lateness_ms"] < 1000
    assert 0 < step["p50_latency_ms"] <= step["p99_latency_ms"] < 100


def test_a_fleet_publisher_that_cannot_reach_the_broker_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx", hop=10)
    with LocalBroker() as local:
        dead = local.url  # a port nobody listens on once this broker is gone
    step = run_step(model, 2, Fleet(4.0), sink_url="null:", settings=CapacitySettings(step_s=4.0, source="mqtt"),
                    inference=bench_settings(1), secret_file=str(tmp_path / "key"), broker_url=dead)
    assert not step["ok"]
    assert "fleet publisher failed" in step["why"] and step["drops"] == step["expected_windows"] > 0
    assert "publisher" in step["causes"] and not worth_confirming(step)  # a re-run would fail the same way
