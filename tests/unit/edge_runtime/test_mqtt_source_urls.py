"""Which MQTT source a URL makes: the lean subscriber by default, paho-mqtt for QoS 2 or when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.sources import SourceContext, open_source

CTX = SourceContext(model_rate_hz=50.0, metrics=Metrics())
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("query", "kind", "qos"), [
    ("", "MqttSource", 1),
    ("?qos=0", "MqttSource", 0),
    ("?client=lean&qos=1", "MqttSource", 1),
    ("?client=paho", "PahoMqttSource", 1),
    ("?qos=2", "PahoMqttSource", 2),  # the lean client does not speak QoS 2
    ("?client=lean&qos=2", "PahoMqttSource", 2),
])
def test_the_url_picks_the_lean_source_unless_paho_or_qos_2_is_asked_for(query: str, kind: str, qos: int) -> None:
    source = open_source(f"mqtt://127.0.0.1:1883/imu/+/raw{query}", CTX)
    assert (type(source).__name__, source.qos, source.pattern) == (kind, qos, "imu/+/raw")
    assert source.name.startswith("mqtt-in") and source.device_of("imu/w1/raw") == "w1"


@pytest.mark.parametrize(("query", "message"), [
    ("?client=fast", "unknown MQTT client 'fast'; known: lean, paho"),
    ("?qos=3", "qos must be 0, 1 or 2"),
    ("?qos=one", "qos must be 0, 1 or 2"),
    ("?format=csv", "format must be frames, json, or mqtt"),
    ("?clients=paho", "unknown parameter"),
])
def test_a_bad_mqtt_source_option_is_a_config_error_that_names_the_choices(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        open_source(f"mqtt://127.0.0.1:1883/imu/+/raw{query}", CTX)


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_both_sources_refuse_shared_subscriptions(client: str) -> None:
    with pytest.raises(ConfigError, match=r"\$share/ subscriptions would split"):
        open_source(f"mqtt://127.0.0.1:1883/$share/g/imu/+/raw?client={client}", CTX)


def test_the_lean_source_refuses_a_malformed_topic_filter() -> None:
    with pytest.raises(ConfigError, match="whole levels"):
        open_source("mqtt://127.0.0.1:1883/imu/w+/raw", CTX)


def test_the_lean_source_does_not_load_paho() -> None:
    code = ("import sys\nfrom edge_runtime.metrics import Metrics\n"
            "from edge_runtime.sources import SourceContext, open_source\n"
            "open_source('mqtt://127.0.0.1:1883/imu/+/raw', SourceContext(model_rate_hz=50.0, metrics=Metrics()))\n"
            "print(sorted(m for m in sys.modules if m.startswith('paho')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
