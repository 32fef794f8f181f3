"""Raw samples from MQTT: subscribe to a topic pattern whose ``+`` level is the device id.

``mqtt://broker:1883/imu/+/raw`` receives ``imu/<device id>/raw``; the first ``+`` of the
pattern marks the level that names the device. The broker's ACL lets each wearable write only
its own topic, so the topic is what vouches for the sender: a frame on ``imu/A/raw`` claiming
to be device B is dropped (``blocks_device_mismatch``). A payload is one binary frame of the
wire protocol, or a JSON samples object (schema in ``edge_runtime.decode``).

paho's callback only wraps the message into a :class:`Received` and offers it to the inbox;
a full inbox drops it and counts it. Scaling out: never use a ``$share/`` subscription (it
deals one wearer's messages round-robin to several runtimes, which would split its windows);
give each runtime a ``streams.shard = "k/n"`` or its own topic subset instead (see deploy/).
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime import mqtt_link
from edge_runtime.decode import Received
from edge_runtime.errors import ConfigError
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.sources import Inbox, Source, SourceContext

log = logging.getLogger(__name__)


class MqttSource(Source):
    def __init__(self, settings: MqttSettings, pattern: str, fmt: str, qos: int) -> None:
        super().__init__()
        if not pattern or pattern.startswith("$share/"):
            raise ConfigError(f"MQTT source topic {pattern!r}: give a pattern such as imu/+/raw "
                              "($share/ subscriptions would split one wearer's samples across runtimes)")
        levels = pattern.split("/")
        self.device_level = levels.index("+") if "+" in levels else None
        self.name = f"mqtt-in:{settings.address}/{pattern}"
        self.settings, self.pattern, self.fmt, self.qos = settings, pattern, fmt, qos
        self._client: mqtt.Client | None = None

    @classmethod
    def from_url(cls, url: str, ctx: SourceContext) -> "MqttSource":
        settings, topic, extra = mqtt_link.parse_url(url, ctx.mqtt, {"qos", "format"})
        fmt = extra.get("format", "mqtt")
        if fmt not in ("mqtt", "frames", "json"):
            raise ConfigError(f"{url!r}: format must be frames, json, or mqtt (either, by first byte)")
        try:
            qos = int(extra.get("qos", "1"))
        except ValueError:
            raise ConfigError(f"{url!r}: qos must be 0, 1 or 2") from None
        return cls(settings, topic or "imu/+/raw", fmt, qos)

    def device_of(self, topic: str) -> str | None:
        if self.device_level is None:
            return None
        levels = topic.split("/")
        return levels[self.device_level] if self.device_level < len(levels) else None

    def start(self, inbox: Inbox) -> None:
        def on_connect(client: mqtt.Client, properties: Any) -> None:
            client.subscribe(self.pattern, qos=self.qos)  # again after every reconnect (clean session)

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            inbox.offer(Received(f"mqtt:{msg.topic}", bytes(msg.payload), self.fmt, self.device_of(msg.topic)))

        def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: list, props: Any) -> None:
            if any(r.is_failure for r in reasons):
                log.error("mqtt-in: the broker refused the subscription to %s (%s); check its ACL",
                          self.pattern, ", ".join(str(r) for r in reasons))
            else:
                log.info("mqtt-in: subscribed to %s", self.pattern)

        client = mqtt_link.make_client(self.settings, "mqtt-in", on_connect=on_connect)
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        self._client = client
        mqtt_link.start(client, self.settings)

    def __exit__(self, *exc: Any) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
