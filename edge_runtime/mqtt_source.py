"""Raw samples from MQTT: subscribe to a topic pattern whose ``+`` level is the device id.

``mqtt://broker:1883/imu/+/raw`` receives ``imu/<device id>/raw``; the first ``+`` of the
pattern marks the level that names the device. The broker's ACL lets each wearable write only
its own topic, so the topic is what vouches for the sender: a frame on ``imu/A/raw`` claiming
to be device B is dropped (``blocks_device_mismatch``). A payload is one binary frame of the
wire protocol, or a JSON samples object (schema in ``edge_runtime.decode``). Retained
messages are taken like any other. Scaling out: never use a ``$share/`` subscription (it
deals one wearer's messages round-robin to several runtimes, which would split its windows);
give each runtime a ``streams.shard = "k/n"`` or its own topic subset instead (see deploy/).

How: this client speaks the subscribing side of MQTT 5 and 3.1.1 itself
(:mod:`edge_runtime.mqtt_wire_in`) on one thread, ``mqtt-in:<broker>/<pattern>``, which connects
(:func:`edge_runtime.mqtt_link.dial`: TCP, TLS, CONNECT/CONNACK, then SUBSCRIBE), reads the
socket 64 KiB at a time, cuts every PUBLISH out of a read in one pass, hands the read's
messages to the inbox in one :meth:`~edge_runtime.sources.Inbox.offer_many` (a full inbox drops
and counts them) and then acknowledges the read's QoS 1 messages in one send. paho spent
160-280 us of CPU per message (objects and callbacks per message, a PUBACK send each); see
RUNTIME.md for what this one costs. It pings when it has sent nothing for half the keepalive,
takes a broker silent for 1.5 keepalives as gone, and reconnects (and subscribes again: a
clean session) after a jittered :class:`~edge_runtime.mqtt_link.Backoff`. QoS 2, or
``?client=paho`` on the URL, uses paho-mqtt instead (:mod:`edge_runtime.mqtt_source_paho`).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from typing import Any

from edge_runtime import mqtt_link, mqtt_wire, mqtt_wire_in
from edge_runtime.decode import Received
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.mqtt_wire import MqttProtocolError
from edge_runtime.sources import Inbox, Source, SourceContext

log = logging.getLogger(__name__)

FORMATS = ("mqtt", "frames", "json")
RECV_SIZE = 65536
MAX_PACKET = 1 << 20  # the largest message we take; MQTT 5 brokers are told, and drop larger ones for us
TOPIC_CACHE_MAX = 4096  # named topics kept (one per device)
POLL_S = 0.2  # the socket's timeout: how soon the reader notices a stop, a due ping or a silent broker
SUBSCRIBE_ID = 1  # our only SUBSCRIBE on each connection


def source_class(client: str, qos: int) -> type["MqttSourceBase"]:
    """The source for ``?client=`` (``lean`` by default); QoS 2 always goes through paho."""
    if mqtt_link.wants_paho(client, qos):
        from edge_runtime.mqtt_source_paho import PahoMqttSource

        return PahoMqttSource
    return MqttSource


class MqttSourceBase(Source):
    """What both MQTT sources share: the pattern, the device level, the URL, the metrics (each
    connection after the first counts as ``mqtt_in_reconnects``)."""

    def __init__(self, settings: MqttSettings, pattern: str, fmt: str, qos: int, *, metrics: Metrics) -> None:
        super().__init__()
        if not pattern or pattern.startswith("$share/"):
            raise ConfigError(f"MQTT source topic {pattern!r}: give a pattern such as imu/+/raw "
                              "($share/ subscriptions would split one wearer's samples across runtimes)")
        levels = pattern.split("/")
        self.device_level = levels.index("+") if "+" in levels else None
        self.name = f"mqtt-in:{settings.address}/{pattern}"
        self.settings, self.pattern, self.fmt, self.qos, self.metrics = settings, pattern, fmt, qos, metrics

    @classmethod
    def from_url(cls, url: str, ctx: SourceContext) -> "MqttSourceBase":
        """The source ``url`` asks for, lean or paho (:func:`source_class`), whichever class it is called on."""
        settings, topic, extra = mqtt_link.parse_url(url, ctx.mqtt, {"qos", "format", "client"})
        fmt = extra.get("format", "mqtt")
        if fmt not in FORMATS:
            raise ConfigError(f"{url!r}: format must be frames, json, or mqtt (either, by first byte)")
        try:
            qos = int(extra.get("qos", "1"))
        except ValueError:
            qos = -1
        if qos not in (0, 1, 2):
            raise ConfigError(f"{url!r}: qos must be 0, 1 or 2")
        try:
            chosen = source_class(extra.get("client", "lean"), qos)
        except ConfigError as exc:
            raise ConfigError(f"{url!r}: {exc}") from None
        return chosen(settings, topic or "imu/+/raw", fmt, qos, metrics=ctx.metrics)

    def device_of(self, topic: str) -> str | None:
        if self.device_level is None:
            return None
        levels = topic.split("/")
        return levels[self.device_level] if self.device_level < len(levels) else None


class MqttSource(MqttSourceBase):
    """The lean subscriber (the module docstring says how it works)."""

    def __init__(self, settings: MqttSettings, pattern: str, fmt: str, qos: int, *, metrics: Metrics) -> None:
        super().__init__(settings, pattern, fmt, qos, metrics=metrics)
        if qos not in (0, 1):
            raise ConfigError(f"the lean MQTT source subscribes at QoS 0 or 1, not {qos}; add ?client=paho for QoS 2")
        mqtt_wire_in.check_filter(pattern)
        self._v5 = settings.protocol == "5"
        self._backoff = mqtt_link.Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._connections = mqtt_link.Connections("mqtt-in", settings.address, metrics.inc)
        self._origins: dict[bytes, tuple[str, str | None]] = {}  # topic bytes -> (origin, device)
        self._tls: ssl.SSLContext | None = None
        self._connect = self._subscribe = b""

    def start(self, inbox: Inbox) -> None:
        s = self.settings
        self._tls = mqtt_link.tls_context(s) if s.tls else None
        client_id = s.client_id or f"imu-anon-mqtt-in-{uuid.uuid4().hex[:8]}"
        self._connect = mqtt_wire.connect(client_id=client_id, protocol=s.protocol, keepalive_s=s.keepalive_s,
                                          username=s.username or None, password=s.password() if s.username else None,
                                          maximum_packet_size=MAX_PACKET)
        self._subscribe = mqtt_wire_in.subscribe(self.pattern, self.qos, SUBSCRIBE_ID, v5=self._v5)
        super().start(inbox)

    def _run(self, inbox: Inbox) -> None:
        address, delay, quiet, clean = self.settings.address, 0.0, False, True
        while not self._stop.is_set() and not (delay and self._stop.wait(delay)):
            link = mqtt_link.try_dial(self.settings, self._tls, self._connect, self._subscribe, v5=self._v5,
                                      backoff=self._backoff, role="mqtt-in", quiet=quiet)
            if not isinstance(link, mqtt_link.Link):
                delay, quiet = link, True  # an outage is said once; the retries go on quietly
                continue
            try:
                if self._stop.is_set():
                    return
                if clean:  # after a protocol error the delays keep growing: the same bytes may come again
                    self._backoff.reset()
                self._connections.connected()
                if self._serve(link, inbox):
                    return
            except MqttProtocolError as exc:
                delay, quiet, clean = self._backoff.next(), True, False
                log.error("mqtt-in: dropped the connection to %s: %s (is it an MQTT %s listener?); "
                          "reconnecting in about %.1f s", address, exc, self.settings.protocol, delay)
            except OSError as exc:
                delay, quiet, clean = self._backoff.next(), True, True
                log.warning("mqtt-in: lost %s (%s); reconnecting in about %.1f s", address,
                            str(exc) or type(exc).__name__, delay)
            finally:
                link.sock.close()

    def _serve(self, link: mqtt_link.Link, inbox: Inbox) -> bool:
        """Read messages until the link breaks (raises) or we stop (True, after a DISCONNECT)."""
        sock, v5, stop, fmt = link.sock, self._v5, self._stop, self.fmt
        keepalive = link.connack.server_keep_alive
        keepalive = self.settings.keepalive_s if keepalive is None else keepalive
        ping_every, dead_after = (keepalive / 2, keepalive * 1.5) if keepalive else (float("inf"),) * 2
        reader = mqtt_wire_in.MessageReader(v5=v5, max_packet=MAX_PACKET)
        origins, name, offer_many, recv, sendall = self._origins, self._name, inbox.offer_many, sock.recv, sock.sendall
        monotonic, timeout, pubacks = time.monotonic, socket.timeout, mqtt_wire_in.pubacks
        data: bytes | None = b"".join(bytes((first,)) + mqtt_wire.remaining_length(len(body)) + body
                                      for first, body in link.rest) + link.reader.pending or None
        last_in = last_out = monotonic()
        sock.settimeout(POLL_S)
        while True:
            at = monotonic()
            if data:
                last_in = at
                messages, acks, packets = reader.feed(data)
                if messages:
                    items = []
                    for topic, payload in messages:
                        named = origins.get(topic) or name(topic)
                        items.append(Received(named[0], payload, fmt, named[1], None, (), at))
                    offer_many(items)
                if acks:  # after the hand-over: a message is ours once it is in the inbox (or counted dropped)
                    sendall(pubacks(acks))
                    last_out = at
                if packets:
                    self._handle(packets)
            elif data is not None:
                raise ConnectionError("closed by the broker")
            if stop.is_set():
                try:
                    sendall(mqtt_wire.disconnect(v5=v5))
                except OSError:
                    pass
                log.info("mqtt-in: disconnected from %s", self.settings.address)
                return True
            if at - last_out >= ping_every:
                sendall(mqtt_wire.PINGREQ_PACKET)
                last_out = at
            if at - last_in >= dead_after:
                raise ConnectionError(f"nothing from the broker for {dead_after:.0f} s (keepalive {keepalive} s)")
            try:
                data = recv(RECV_SIZE)
            except timeout:
                data = None

    def _name(self, raw: bytes) -> tuple[str, str | None]:
        topic = mqtt_wire_in.topic_name(raw)
        if len(self._origins) >= TOPIC_CACHE_MAX:
            self._origins.clear()
        named = self._origins[raw] = (f"mqtt:{topic}", self.device_of(topic))
        return named

    def _handle(self, packets: list[tuple[int, bytes]]) -> None:
        """Packets other than PUBLISH; raises when one ends the link."""
        for first, body in packets:
            kind = first >> 4
            if kind == mqtt_wire.SUBACK:
                _, codes = mqtt_wire_in.parse_suback(body, self._v5)
                if any(code >= 0x80 for code in codes):
                    log.error("mqtt-in: the broker refused the subscription to %s (%s); check its ACL", self.pattern,
                              ", ".join(mqtt_wire.reason_name(code) for code in codes if code >= 0x80))
                elif codes[0] < self.qos:
                    log.warning("mqtt-in: subscribed to %s, but the broker grants QoS %d only (asked: %d)",
                                self.pattern, codes[0], self.qos)
                else:
                    log.info("mqtt-in: subscribed to %s", self.pattern)
            elif kind == mqtt_wire.DISCONNECT:
                code, why = mqtt_wire.parse_disconnect(body)
                raise ConnectionError(f"the broker disconnected: {mqtt_wire.reason_name(code)}"
                                      + (f", {why}" if why else ""))
            elif kind != mqtt_wire.PINGRESP:
                raise MqttProtocolError(f"unexpected packet type {kind} from the broker")

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a dial under way ends by its own timeouts; the thread is a daemon
