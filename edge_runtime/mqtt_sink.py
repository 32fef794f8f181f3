"""Publishing anonymised windows to an MQTT broker: one message per window, never per sample.

Topics come from a template (``{stream}`` is the pseudonym, ``{gateway}`` and ``{model}`` are
also known), e.g. ``imu/anon/{stream}``. A retained status topic says ``online`` with what a
consumer needs to read the windows (published at every connect); the broker publishes the
last will ``offline`` (retained) if the gateway vanishes, and a clean shutdown publishes
``offline`` itself.

While the broker is unreachable, windows wait in a bounded backlog that drops the oldest
(counted as ``publish_dropped``) and drains in order once the connection is back. At most
``INFLIGHT_CAP`` QoS 1 messages are unacknowledged at once, fewer if the broker's Receive
Maximum (MQTT 5 CONNACK; mosquitto says 20 unless ``max_inflight_messages`` is set) is lower,
on every connection: so at most ``buffer_max + INFLIGHT_CAP`` windows are held during an
outage. QoS 1 is at-least-once: the windows unacknowledged when a connection broke are sent
again, first and in order, with the DUP flag, so one may arrive twice (same stream, segment
and index).

How: this client speaks MQTT itself (:mod:`edge_runtime.mqtt_wire`) on its own socket, with no
thread on the data path. The pipeline's thread, which calls :meth:`write_many` once per pass
and :meth:`poll` at least every 0.1 s, sends the pass's PUBLISH packets in one non-blocking
send and reads the PUBACKs that have arrived (and pings, and notices a dead broker) in
``poll``. paho spent ~110 us of CPU per QoS 1 window across two threads; see RUNTIME.md for
what this costs. Only the blocking part of a connection (TCP connect, TLS handshake,
CONNECT/CONNACK and the ``online`` status) runs on a thread, ``mqtt-out-net``, which hands the
connected socket over and sleeps until the pipeline reports it lost, then reconnects after a
jittered :class:`~edge_runtime.mqtt_link.Backoff`. QoS 2, or ``?client=paho`` on the URL, uses
the paho client instead (:mod:`edge_runtime.mqtt_sink_paho`).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable, Sequence

from edge_runtime import mqtt_link, mqtt_wire, payload
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.mqtt_wire import MqttProtocolError, publish_header
from edge_runtime.signals import AnonymisedWindow
from edge_runtime.sinks import Sink

log = logging.getLogger(__name__)

INFLIGHT_CAP = 100  # QoS 1 messages unacknowledged at once; 20 capped a loaded gateway near 2,000 windows/s
RECV_SIZE = 65536
TOPIC_CACHE_MAX = 4096  # encoded topics kept (one per stream); pseudonym rotation makes new ones
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def check_sink_args(topic: str, qos: int, buffer_max: int, *, qos_levels: tuple[int, ...]) -> None:
    """The checks both MQTT sinks make on their arguments."""
    if qos not in qos_levels:
        raise ConfigError(f"publish qos must be one of {', '.join(map(str, qos_levels))}, got {qos}")
    if "#" in topic or "+" in topic:
        raise ConfigError(f"output topic {topic!r} must not hold wildcards; use {{stream}} for the stream id")
    if "{stream}" not in topic:
        raise ConfigError(f"output topic {topic!r} must contain {{stream}}, so each wearer has its own topic")
    if buffer_max < 1:
        raise ConfigError(f"publish buffer_max must be at least 1, got {buffer_max}")


def sink_class(client: str, qos: int) -> type[Sink]:
    """The sink for ``?client=`` (``lean`` by default); QoS 2 always goes through paho."""
    if mqtt_link.wants_paho(client, qos):
        from edge_runtime.mqtt_sink_paho import PahoMqttSink

        return PahoMqttSink
    return MqttSink


class MqttSink(Sink):
    """The lean publisher (the module docstring says how it works). ``write_many``, ``poll``,
    ``flush`` and leaving are for one thread, the pipeline's; the net thread only connects."""

    def __init__(self, settings: MqttSettings, topic: str, *, qos: int, fmt: str, buffer_max: int, status_topic: str,
                 status: Callable[[str, str, str], bytes], gateway: str, metrics: Metrics) -> None:
        check_sink_args(topic, qos, buffer_max, qos_levels=(0, 1))
        self.name = f"{settings.address}/{topic}"
        self.settings, self.topic, self.qos, self.fmt = settings, topic, qos, fmt
        self.status_topic = status_topic.format(gateway=gateway)
        self._status_field = mqtt_wire.topic_field(self.status_topic)
        self._status, self._gateway, self.metrics = status, gateway, metrics
        self._v5 = settings.protocol == "5"
        self._header = mqtt_wire.header_maker(qos, self._v5)
        self._buffer_max = buffer_max
        self._lock = threading.Lock()  # the data path's state; only the pipeline's thread contends for it
        self._backlog: deque[tuple[bytes, bytes]] = deque()  # (topic field, payload) not yet sent
        self._resend: deque[tuple[bytes, bytes]] = deque()  # unacknowledged when a connection broke
        self._urgent: deque[bytes] = deque()  # status payloads, ahead of every window
        self._topics: dict[tuple[str, str], bytes] = {}
        self._backoff = mqtt_link.Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._connections = mqtt_link.Connections("mqtt-out", settings.address, metrics.inc)
        self._stopping, self._lost = threading.Event(), threading.Event()
        self._handoff: mqtt_link.Link | None = None  # set by the net thread, taken by the pipeline's
        self._retry_in = 0.0
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._tls: ssl.SSLContext | None = None
        self._window_cap = INFLIGHT_CAP - 1
        self._keepalive_s = settings.keepalive_s
        self._max_packet: int | None = None
        self._last_in = self._last_out = 0.0
        self._closing = False
        self._reset_link()
        self.inflight_max = INFLIGHT_CAP  # QoS 1 messages unacknowledged at once, status included

    def _reset_link(self) -> None:
        self._reader: mqtt_wire.PacketReader | None = None
        self._inflight: dict[int, tuple[bytes, bytes]] = {}  # packet id -> window, unacknowledged
        self._statuses: set[int] = set()  # packet ids of status messages in flight (never re-sent)
        self._next_pid = 1
        self._parts: list[bytes] = []  # packets queued for the next send
        self._unsent = b""  # what the socket did not take last time; goes first, as it is (TLS wants that)
        self._ping_at: float | None = None
        self._refusals = 0

    # -- connecting: the net thread -------------------------------------------------------------

    def __enter__(self) -> "MqttSink":
        s = self.settings
        self._tls = mqtt_link.tls_context(s) if s.tls else None
        client_id = s.client_id or f"imu-anon-mqtt-out-{uuid.uuid4().hex[:8]}"
        will = mqtt_wire.Will(topic=self.status_topic, payload=self._status("offline", self.fmt, self.topic))
        self._connect = mqtt_wire.connect(client_id=client_id, protocol=s.protocol, keepalive_s=s.keepalive_s,
                                          username=s.username or None,
                                          password=s.password() if s.username else None, will=will)
        # The first PUBLISH on every connection (mqtt_link.dial sends it), id 1: nothing else is in flight yet.
        self._online = mqtt_wire.publish(self.status_topic, self._status("online", self.fmt, self.topic), 1, 1,
                                         retain=True, v5=self._v5)
        self._thread = threading.Thread(target=self._connect_forever, name="mqtt-out-net", daemon=True)
        self._thread.start()
        return self

    def _connect_forever(self) -> None:
        delay = 0.0
        while not self._stopping.is_set() and not (delay and self._stopping.wait(delay)):
            link = mqtt_link.try_dial(self.settings, self._tls, self._connect, self._online, v5=self._v5,
                                      backoff=self._backoff, role="mqtt-out", quiet=True)
            if not isinstance(link, mqtt_link.Link):
                delay = link
                continue
            if self._stopping.is_set():
                link.sock.close()  # shutting down: the broker publishes the will, offline is true
                return
            self._backoff.reset()
            self._connections.connected()
            self._lost.clear()
            self._handoff = link
            self._lost.wait()  # the pipeline's thread sets it when the link breaks, __exit__ when we stop
            delay = self._retry_in

    # -- the data path: the pipeline's thread ---------------------------------------------------

    def _adopt(self) -> None:
        link, self._handoff = self._handoff, None
        if link is None:
            return
        self._reset_link()
        self._sock, self._reader, connack = link.sock, link.reader, link.connack
        self.inflight_max = min(INFLIGHT_CAP, connack.receive_maximum)
        self._window_cap = max(1, self.inflight_max - 1)  # one slot stays free for a status message
        self._statuses.add(1)  # the online status dial sent
        self._next_pid = 2
        self._keepalive_s = connack.server_keep_alive if connack.server_keep_alive is not None \
            else self.settings.keepalive_s
        self._max_packet = connack.maximum_packet_size
        self._last_in = self._last_out = time.monotonic()
        if connack.maximum_qos < self.qos:
            log.error("mqtt-out: %s accepts QoS %d at most and will refuse these QoS %d windows; "
                      "publish with ?qos=%d", self.settings.address, connack.maximum_qos, self.qos, connack.maximum_qos)
        if link.rest:
            try:
                self._handle(link.rest)
            except MqttProtocolError as exc:
                self._lose(str(exc))

    def _lose(self, why: str) -> None:
        """The link broke: its unacknowledged windows go first on the next one; the net thread reconnects."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        carried = list(self._inflight.values())
        if carried:
            self._resend.extendleft(reversed(carried))  # older than any window still waiting to be re-sent
        self._reset_link()
        delay = self._backoff.next()
        if not self._stopping.is_set():
            log.warning("mqtt-out: lost %s (%s); reconnecting in about %.1f s", self.settings.address, why, delay)
        self._retry_in = delay
        self._lost.set()

    def _topic_for(self, window: AnonymisedWindow) -> bytes:
        if len(self._topics) >= TOPIC_CACHE_MAX:
            self._topics.clear()
        field = mqtt_wire.topic_field(self.topic.format(stream=window.stream, gateway=self._gateway,
                                                        model=window.model))
        self._topics[(window.stream, window.model)] = field
        return field

    def write(self, window: AnonymisedWindow) -> None:
        """Queued; sent at the next :meth:`poll` (or sooner, if the backlog is full)."""
        self.check(window)
        self._queue((window,), (payload.encode(window, self.fmt),), send=False)

    def write_many(self, windows: Sequence[AnonymisedWindow]) -> None:
        """The windows of one pass, encoded together and sent in one socket write."""
        for window in windows:
            self.check(window)
        if windows:
            self._queue(windows, payload.encode_many(windows, self.fmt), send=True)

    def _queue(self, windows: Sequence[AnonymisedWindow], data: Sequence[bytes], send: bool) -> None:
        with self._lock:
            backlog, topics = self._backlog, self._topics
            for window, body in zip(windows, data):
                field = topics.get((window.stream, window.model)) or self._topic_for(window)
                backlog.append((field, body))
            over = len(backlog) > self._buffer_max
            if send or over:
                self._pump(read=over or len(self._inflight) + len(backlog) > self.inflight_max - 1)
            excess = len(backlog) - self._buffer_max
            if excess > 0:
                for _ in range(excess):
                    backlog.popleft()
                self.metrics.inc("publish_dropped", excess)

    def poll(self) -> None:
        """Between passes (at least every 0.1 s): read acknowledgements, send what waits, keep alive."""
        with self._lock:
            self._pump(read=True)

    def _pump(self, read: bool) -> None:
        if self._handoff is not None:
            self._adopt()
        if self._sock is None:
            return
        now = time.monotonic()
        if read:
            self._read(now)
        if self._sock is not None:
            self._fill()
            self._send(now)
        if self._sock is not None:
            self._keep_alive(now)

    def _read(self, now: float) -> None:
        sock, reader, inflight = self._sock, self._reader, self._inflight
        try:
            for _ in range(64):  # bounded: a broker that never pauses cannot hold the pipeline here
                data = sock.recv(RECV_SIZE)
                if not data:
                    return self._lose("closed by the broker")
                self._last_in = now
                acked, refused, packets = reader.feed(data)
                pop = inflight.pop
                for packet_id in acked:
                    if pop(packet_id, None) is None:
                        self._statuses.discard(packet_id)
                if refused:
                    self._count_refused(refused)
                if packets and not self._handle(packets):
                    return
                if len(data) < RECV_SIZE and self._tls is None:
                    return  # drained; TLS hands out a record at a time, so it reads until it would block
        except _WOULD_BLOCK:
            pass
        except MqttProtocolError as exc:
            self._lose(f"{exc}; is this an MQTT {self.settings.protocol} listener?")
        except OSError as exc:
            self._lose(str(exc) or type(exc).__name__)

    def _count_refused(self, refused: list[tuple[int, int]]) -> None:
        self.metrics.inc("publish_refused", len(refused))
        if not self._refusals:  # once per connection: the broker's ACL or limits say no to every window
            log.warning("mqtt-out: %s refused a message: %s (check the broker's ACL for %s)", self.settings.address,
                        mqtt_wire.reason_name(refused[0][1]), self.topic)
        self._refusals += len(refused)

    def _handle(self, packets: list[tuple[int, bytes]]) -> bool:
        """Packets other than PUBACK; False when one ended the link."""
        for first, body in packets:
            kind = first >> 4
            if kind == mqtt_wire.PINGRESP:
                self._ping_at = None
            elif kind == mqtt_wire.DISCONNECT:
                code, why = mqtt_wire.parse_disconnect(body)
                self._lose(f"the broker disconnected: {mqtt_wire.reason_name(code)}" + (f", {why}" if why else ""))
                return False
            else:
                self._lose(f"unexpected packet type {kind} from the broker (a publisher subscribes to nothing)")
                return False
        return True

    def _fill(self) -> None:
        """Move what waits into the next send, as far as the in-flight limits allow (none at QoS 0,
        where a socket that did not take the last send holds the windows back instead)."""
        inflight, statuses, parts, v5, qos = self._inflight, self._statuses, self._parts, self._v5, self.qos
        while self._urgent and len(inflight) + len(statuses) < self.inflight_max:
            body, pid = self._urgent.popleft(), self._new_pid()
            statuses.add(pid)
            parts += (publish_header(self._status_field, len(body), 1, pid, retain=True, v5=v5), body)
        if self._closing:
            return
        if qos:  # windows: one slot short of the limit (a status always fits); all together: the limit
            room = min(self._window_cap - len(inflight), self.inflight_max - len(inflight) - len(statuses))
        else:
            room = 0 if self._unsent else INFLIGHT_CAP
        while self._resend and room > 0:
            field, body = entry = self._resend.popleft()
            pid = self._new_pid()
            inflight[pid] = entry
            parts += (publish_header(field, len(body), 1, pid, dup=True, v5=v5), body)
            room -= 1
        count = min(room, len(self._backlog))
        if count <= 0:
            return
        popleft, make, limit, pid = self._backlog.popleft, self._header, self._max_packet, self._next_pid
        published = count
        if qos and limit is None:  # the common case, kept to the bare minimum per window
            for _ in range(count):
                field, body = entry = popleft()
                while pid in inflight or pid in statuses:
                    pid = pid % 65535 + 1
                parts += (make(field, len(body), pid), body)
                inflight[pid] = entry
                pid = pid % 65535 + 1
        else:
            for _ in range(count):
                field, body = entry = popleft()
                while qos and (pid in inflight or pid in statuses):
                    pid = pid % 65535 + 1
                head = make(field, len(body), pid)
                if limit is not None and len(head) + len(body) > limit:
                    self._too_large(len(head) + len(body))
                    published -= 1
                    continue
                if qos:
                    inflight[pid] = entry
                parts += (head, body)
                pid = pid % 65535 + 1
        self._next_pid = pid
        self.metrics.inc("windows_published", published)

    def _too_large(self, size: int) -> None:
        self.metrics.inc("publish_dropped")
        log.warning("mqtt-out: a %d-byte window exceeds the %d-byte maximum packet of %s: dropped "
                    "(publish.format = \"binary\" is less than half the size)", size, self._max_packet,
                    self.settings.address)

    def _new_pid(self) -> int:
        pid = self._next_pid
        while pid in self._inflight or pid in self._statuses:
            pid = pid % 65535 + 1
        self._next_pid = pid % 65535 + 1
        return pid

    def _send(self, now: float) -> None:
        sock = self._sock
        try:
            if self._unsent:
                sent = sock.send(self._unsent)
                self._last_out = now
                self._unsent = self._unsent[sent:]
                if self._unsent:
                    return
            if self._parts:
                data = b"".join(self._parts)
                self._parts, self._unsent = [], data
                sent = sock.send(data)
                self._last_out = now
                self._unsent = data[sent:] if sent < len(data) else b""
        except _WOULD_BLOCK:
            pass  # the socket is full: the rest goes at the next pump (_unsent bounds what waits)
        except OSError as exc:
            self._lose(str(exc) or type(exc).__name__)

    def _keep_alive(self, now: float) -> None:
        """MQTT keepalive (3.1.2.10): ping when nothing went out, or nothing came in, for a keepalive
        period; no answer within another period means the broker is gone (or stopped reading)."""
        keepalive = self._keepalive_s
        if not keepalive:
            return
        if self._ping_at is not None:
            if now - self._ping_at >= keepalive:
                self._lose(f"no answer to a ping within {keepalive} s")
        elif now - self._last_out >= keepalive or now - self._last_in >= keepalive:
            self._ping_at = now
            self._parts.append(mqtt_wire.PINGREQ_PACKET)
            self._send(now)

    # -- draining and leaving ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return len(self._backlog) + len(self._resend)

    def _idle(self) -> bool:
        return not (self._backlog or self._resend or self._urgent or self._inflight or self._statuses or self._parts
                    or self._unsent)

    def _progress(self, done: Callable[[], bool], timeout: float) -> bool:
        """Serve the socket ourselves until ``done()`` or ``timeout``: flush and __exit__ run
        when the pipeline no longer polls."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._pump(read=True)
                if done():
                    return True
                sock, writing = self._sock, bool(self._parts or self._unsent)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = min(left, 0.05)
            try:
                if sock is None:
                    time.sleep(wait)
                else:
                    select.select([sock], [sock] if writing else [], [], wait)
            except (OSError, ValueError):  # closed under us: the next pump notices
                time.sleep(wait)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the backlog is sent and acknowledged."""
        if self._thread is None or self._progress(self._idle, timeout):
            return
        with self._lock:
            left = self.backlog + len(self._inflight)
        if left:
            log.warning("mqtt-out: %d window(s) not acknowledged by %s within %.0f s of shutdown",
                        left, self.settings.address, timeout)
            self.metrics.inc("publish_unflushed", left)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self.flush(timeout=1.0)  # the pipeline flushed already (a bounded wait); this is the last try
        with self._lock:
            self._closing = True  # from here on only the offline status goes out, no window after it
            connected = self._sock is not None
            if connected:
                self._urgent.append(self._status("offline", self.fmt, self.topic))
        said_offline = connected and self._progress(lambda: not (self._urgent or self._statuses), 2.0)
        self._stopping.set()
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                if said_offline:  # else no DISCONNECT: the broker publishes the will, offline all the same
                    try:
                        sock.settimeout(0.5)
                        sock.sendall(self._unsent + b"".join(self._parts) + mqtt_wire.disconnect(v5=self._v5))
                    except OSError:
                        pass
                sock.close()
                log.info("mqtt-out: disconnected from %s", self.settings.address)
            self._lost.set()  # ends the net thread's wait
        self._thread.join(timeout=1.0)
        link, self._handoff = self._handoff, None
        if link is not None:
            link.sock.close()
        self._thread = None
