"""Publishing anonymised windows to an MQTT broker: one message per window, never per sample.

Topics come from a template (``{stream}`` is the pseudonym, ``{gateway}`` and ``{model}`` are
also known), e.g. ``imu/anon/{stream}``. A retained status topic says ``online`` with what a
consumer needs to read the windows; the broker publishes the last will ``offline`` (retained)
if the gateway vanishes, and a clean shutdown publishes ``offline`` itself.

While the broker is unreachable, windows wait in a bounded backlog that drops the oldest
(counted as ``publish_dropped``) and drains in order once the connection is back. paho's own
queue is capped small (``PAHO_QUEUE``) so the backlog is the one place messages wait: at most
``buffer_max + PAHO_QUEUE`` windows are held during an outage. The broker's Receive Maximum
(MQTT 5 CONNACK; mosquitto says 20 unless ``max_inflight_messages`` is set) lowers that cap:
paho does not enforce it, and a broker may disconnect a client that exceeds it. QoS 1 is
at-least-once: a window in flight when the connection broke may arrive twice (same stream,
segment and index).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edge_runtime import mqtt_link, payload
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.signals import AnonymisedWindow
from edge_runtime.sinks import Sink

log = logging.getLogger(__name__)

PAHO_QUEUE = 100  # unacknowledged QoS 1 windows in paho; 20 capped a loaded gateway near 2,000 windows/s


class MqttSink(Sink):
    def __init__(self, settings: MqttSettings, topic: str, *, qos: int, fmt: str, buffer_max: int, status_topic: str,
                 status: Callable[[str, str, str], bytes], gateway: str, metrics: Metrics) -> None:
        if qos not in (0, 1, 2):
            raise ConfigError(f"publish qos must be 0, 1 or 2, got {qos}")
        if "#" in topic or "+" in topic:
            raise ConfigError(f"output topic {topic!r} must not hold wildcards; use {{stream}} for the stream id")
        if "{stream}" not in topic:
            raise ConfigError(f"output topic {topic!r} must contain {{stream}}, so each wearer has its own topic")
        if buffer_max < 1:
            raise ConfigError(f"publish buffer_max must be at least 1, got {buffer_max}")
        self.name = f"{settings.address}/{topic}"
        self.settings, self.topic, self.qos, self.fmt = settings, topic, qos, fmt
        self.status_topic = status_topic.format(gateway=gateway)
        self._status, self._gateway, self.metrics = status, gateway, metrics
        self._backlog: deque[tuple[str, bytes]] = deque()
        self._buffer_max = buffer_max
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()  # published, not yet acknowledged
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._loop: mqtt_link.NetworkLoop | None = None
        self.inflight_max = PAHO_QUEUE  # QoS 1 messages unacknowledged at once, status included

    def __enter__(self) -> "MqttSink":
        backoff = mqtt_link.Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        client = mqtt_link.make_client(self.settings, "mqtt-out", on_connect=self._on_connect, backoff=backoff)
        # paho's queue bounds what is in flight (every queued message is sent at once): with its
        # own in-flight limit left at 0, each PUBACK does not rescan the queue for a message to
        # release. _drain keeps the windows in flight under inflight_max.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(PAHO_QUEUE)
        client.will_set(self.status_topic, self._status("offline", self.fmt, self.topic), qos=1, retain=True)
        self._client = client
        self._loop = mqtt_link.NetworkLoop(client, backoff, "mqtt-out", self.settings.address)
        self._loop.start(self.settings)
        return self

    def _on_connect(self, client: mqtt.Client, properties: Any) -> None:
        # 65,535 when the broker does not say (MQTT 5, 3.2.2.3.3); 3.1.1 has no such limit.
        receive_max = getattr(properties, "ReceiveMaximum", None) or 65535
        self.inflight_max = min(PAHO_QUEUE, receive_max)  # paho's own queue stays at PAHO_QUEUE: it
        # cannot change on a live connection, and it is only the hard stop behind this cap.
        client.publish(self.status_topic, self._status("online", self.fmt, self.topic), qos=1, retain=True)
        # Draining happens in the pipeline's thread (poll), keeping publish order in one place.

    def write(self, window: AnonymisedWindow) -> None:
        self.check(window)
        topic = self.topic.format(stream=window.stream, gateway=self._gateway, model=window.model)
        with self._lock:
            if len(self._backlog) >= self._buffer_max:
                self._backlog.popleft()
                self.metrics.inc("publish_dropped")
            self._backlog.append((topic, payload.encode(window, self.fmt)))
            self._drain()

    def _drain(self) -> None:
        client, pending = self._client, self._pending
        room = max(1, self.inflight_max - 1)  # windows in flight; one slot stays free for the status message
        published = 0
        while self._backlog and client is not None and client.is_connected():
            if self.qos > 0 and len(pending) >= room:
                while pending and pending[0].is_published():
                    pending.popleft()
                if len(pending) >= room:
                    break  # as many windows in flight as the broker takes; wait for acks
            topic, data = self._backlog[0]
            info = client.publish(topic, data, qos=self.qos)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break  # paho holds PAHO_QUEUE unacknowledged messages (its hard stop); wait for acks
            self._backlog.popleft()
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (self.qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN):
                # NO_CONN at QoS >= 1: the link dropped between the check and the call; paho
                # keeps the message and sends it on reconnect.
                published += 1
                if self.qos > 0:
                    pending.append(info)
            else:
                self.metrics.inc("publish_dropped")
                log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        if published:
            self.metrics.inc("windows_published", published)
        while pending and pending[0].is_published():
            pending.popleft()

    def poll(self) -> None:
        """After each pass of the pipeline: what ``write`` queued in it goes out in one burst."""
        with self._lock:
            self._drain()
            if self._loop is not None:
                self._loop.wake_writer()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the backlog is sent and acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._drain()
                if self._loop is not None:
                    self._loop.wake_writer()
                done = not self._backlog and not self._pending
            if done:
                return
            time.sleep(0.02)
        with self._lock:
            left = len(self._backlog) + len(self._pending)
        if left:
            log.warning("mqtt-out: %d window(s) not acknowledged by %s within %.0f s of shutdown",
                        left, self.settings.address, timeout)
            self.metrics.inc("publish_unflushed", left)

    def __exit__(self, *exc: Any) -> None:
        client = self._client
        if client is None:
            return
        self.flush(timeout=1.0)  # the pipeline flushed already (a bounded wait); this is the last try
        if client.is_connected():
            info = client.publish(self.status_topic, self._status("offline", self.fmt, self.topic), qos=1, retain=True)
            if self._loop is not None:
                self._loop.wake_writer()
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass  # not connected any more: the broker's last will says offline instead
        if self._loop is not None:
            self._loop.stop()
        self._client = self._loop = None
