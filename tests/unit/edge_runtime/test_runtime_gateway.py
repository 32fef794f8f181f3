"""A gateway assembled from its configuration: the decoder table is as large as the fleet that
``streams.max_devices`` lets in, and two MQTT connections under one client id on one broker
(which would disconnect each other forever) are refused at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from model_factory import onnx_model  # noqa: F401 (a fixture)
from runtime_helpers import device_name, frames_for, signal

from edge_runtime import config
from edge_runtime.decode import Received
from edge_runtime.errors import ConfigError
from edge_runtime.gateway import open_gateway

EXAMPLE = Path(__file__).resolve().parents[3] / "edge_runtime" / "deploy" / "gateway.toml"
SOURCE = "mqtt://127.0.0.1:1/imu/+/raw"  # nothing listens on port 1: sinks keep trying, quietly
SINK = "mqtt://127.0.0.1:1/imu/anon/{stream}"


def build(tmp_path: Path, model: Path, *, sources: tuple[str, ...] = ("loop:test",),
          sinks: tuple[str, ...] = ("null:",), **sections: dict) -> config.GatewayConfig:
    return config.build({"model": {"path": str(model)}, "pipeline": {"sources": sources, "sinks": sinks},
                         "privacy": {"secret_file": str(tmp_path / "key")}, "metrics": {"interval_s": 0}, **sections})


class Wearable:
    """One MQTT wearable: its own topic, its HELLO and one SAMPLES message (both heard at t=0, so
    that however slow the test runs, no topic has been silent long enough to give its place up)."""

    samples = signal(8, seed=1)

    def __init__(self, n: int) -> None:
        device = 0x00A1B2C3D4000000 + n
        name = device_name(device)
        self.hello, self.frame = (Received(f"mqtt:imu/{name}/raw", data, "mqtt", name, at=0.0)
                                  for data in frames_for(self.samples, device))


def say_hello(decoders, wearables: list[Wearable]) -> None:
    for wearable in wearables:
        decoders.decode(wearable.hello)


@pytest.mark.parametrize("max_devices, shard, topics", [(1500, "", 1500), (400, "0/3", 1200)])
def test_every_mqtt_topic_that_max_devices_lets_in_keeps_its_decoder(tmp_path: Path, onnx_model: Path,
                                                                    max_devices: int, shard: str, topics: int) -> None:
    # A sharded runtime decodes every shard's topics before it keeps its own devices.
    cfg = build(tmp_path, onnx_model, streams={"max_devices": max_devices, "shard": shard})
    wearables = [Wearable(n) for n in range(topics)]
    with open_gateway(cfg) as gw:
        say_hello(gw.decoders, wearables)
        got = [gw.decoders.decode(wearable.frame) for wearable in wearables]
        counts = gw.metrics.snapshot()
    assert [len(blocks) for blocks in got] == [1] * topics  # no wearable lost its HELLO
    assert counts["origins_evicted"] == 0 and counts["awaiting_config"] == 0


def test_beyond_the_bound_new_topics_are_refused_counted_and_logged_once_while_the_heard_ones_keep_decoding(
        tmp_path: Path, onnx_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cfg = build(tmp_path, onnx_model, streams={"max_devices": 1100})
    wearables = [Wearable(n) for n in range(2 * 1100 + 2)]  # two more topics than the 2,200 decoders
    with open_gateway(cfg) as gw:
        say_hello(gw.decoders, wearables)
        assert gw.metrics.get("origins_refused") == 2 and gw.metrics.get("origins_evicted") == 0
        assert len(gw.decoders.decode(wearables[0].frame)) == 1  # the first topic kept its HELLO
        assert gw.decoders.decode(wearables[-1].frame) == []  # the last has no decoder yet
        assert gw.metrics.get("origins_refused") == 3 and gw.metrics.get("awaiting_config") == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge_runtime.decode"]
    assert len(warnings) == 1 and "2200 origins" in warnings[0] and "streams.max_devices" in warnings[0]
    assert "imu/" not in warnings[0] and wearables[-1].hello.device not in warnings[0]


@pytest.mark.parametrize("source, sink, mqtt", [
    (f"{SOURCE}?client_id=gw-7", f"{SINK}?client_id=gw-7", {}),
    (SOURCE, SINK, {"client_id": "gw-7"}),  # mqtt.client_id goes to every URL that sets none
    (f"{SOURCE}?client_id=gw-7", SINK.replace("127.0.0.1", "localhost") + "?client_id=gw-7", {}),  # one loopback
])
def test_a_source_and_a_sink_with_one_client_id_on_one_broker_are_refused_with_the_fix(
        tmp_path: Path, onnx_model: Path, source: str, sink: str, mqtt: dict) -> None:
    cfg = build(tmp_path, onnx_model, sources=(source,), sinks=(sink,), mqtt=mqtt)
    with pytest.raises(ConfigError) as info:
        with open_gateway(cfg):
            pass
    message = str(info.value)
    assert "mqtt://127.0.0.1:1" in message and "'gw-7'" in message
    assert "?client_id=" in message and source in message and sink in message


@pytest.mark.parametrize("source, sink", [
    (f"{SOURCE}?client_id=gw-7", "mqtt://127.0.0.1:2/imu/anon/{stream}?client_id=gw-7"),  # another broker
    (SOURCE, SINK),  # no client id: each connection makes a random one
    (f"{SOURCE}?client_id=gw-7", f"{SINK}?client_id=gw-7-out"),
])
def test_mqtt_connections_with_their_own_client_ids_or_brokers_start(tmp_path: Path, onnx_model: Path,
                                                                     source: str, sink: str) -> None:
    cfg = build(tmp_path, onnx_model, sources=(source,), sinks=(sink,))
    with open_gateway(cfg) as gw:
        assert len(gw.sources) == len(gw.sinks) == 1


def test_the_shipped_gateway_example_starts_with_a_client_id_per_mqtt_connection(tmp_path: Path,
                                                                                 onnx_model: Path) -> None:
    values = config.read_file(EXAMPLE)
    values |= {"model": {"path": str(onnx_model)}, "privacy": {"secret_file": str(tmp_path / "key")},
               "metrics": {"interval_s": 0}}  # and no Prometheus port taken on the test machine
    for key in ("sources", "sinks"):  # the same broker for all of them, one where nothing listens
        values["pipeline"][key] = [url.replace("127.0.0.1:1883", "127.0.0.1:1") for url in values["pipeline"][key]]
    with open_gateway(config.build(values)) as gw:
        assert len(gw.sources) == 2 and len(gw.sinks) == 1
