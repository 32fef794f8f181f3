"""The paho-mqtt subscriber, kept for QoS 2 and as a fallback (``?client=paho`` on the source URL).

The default source (:class:`edge_runtime.mqtt_source.MqttSource`) speaks MQTT itself at a
fraction of the CPU; this one does the same job through paho-mqtt 2 on paho's own network
thread (``loop_start``). paho's callback only wraps the message into a :class:`Received` and
offers it to the inbox; a full inbox drops it and counts it.
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime import mqtt_link
from edge_runtime.decode import Received
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.mqtt_source import MqttSourceBase
from edge_runtime.sources import Inbox

log = logging.getLogger(__name__)


class PahoMqttSource(MqttSourceBase):
    def __init__(self, settings: MqttSettings, pattern: str, fmt: str, qos: int, *, metrics: Metrics) -> None:
        super().__init__(settings, pattern, fmt, qos, metrics=metrics)
        self._client: mqtt.Client | None = None

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

        client = mqtt_link.make_client(self.settings, "mqtt-in", on_connect=on_connect, on_event=self.metrics.inc)
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        self._client = client
        mqtt_link.start(client, self.settings)

    def __exit__(self, *exc: Any) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
