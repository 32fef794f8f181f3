"""The paho-mqtt publisher, kept for QoS 2 and as a fallback (``?client=paho`` on the sink URL).

The default sink (:mod:`edge_runtime.mqtt_sink`) speaks MQTT itself at a fraction of the CPU;
this one does the same job through paho-mqtt 2 (``CallbackAPIVersion.VERSION2``) and documents
the same behaviour (status, last will, bounded backlog, order). Differences: paho does not
enforce the broker's Receive Maximum, so ``_drain`` keeps the windows in flight under it, and
on a reconnect paho re-sends everything it held, which may exceed it; its socket is served by
:class:`NetworkLoop` on a thread named ``mqtt-out-paho``.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edge_runtime import mqtt_link, payload
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.mqtt_sink import check_sink_args
from edge_runtime.signals import AnonymisedWindow
from edge_runtime.sinks import Sink

log = logging.getLogger(__name__)

PAHO_QUEUE = 100  # unacknowledged QoS 1 windows in paho; 20 capped a loaded gateway near 2,000 windows/s


class PahoMqttSink(Sink):
    def __init__(self, settings: MqttSettings, topic: str, *, qos: int, fmt: str, buffer_max: int, status_topic: str,
                 status: Callable[[str, str, str], bytes], gateway: str, metrics: Metrics) -> None:
        check_sink_args(topic, qos, buffer_max, qos_levels=(0, 1, 2))
        self.name = f"{settings.address}/{topic}"
        self.settings, self.topic, self.qos, self.fmt = settings, topic, qos, fmt
        self.status_topic = status_topic.format(gateway=gateway)
        self._status, self._gateway, self.metrics = status, gateway, metrics
        self._backlog: deque[tuple[str, bytes]] = deque()
        self._buffer_max = buffer_max
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()  # published, not yet acknowledged
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._loop: NetworkLoop | None = None
        self.inflight_max = PAHO_QUEUE  # QoS 1 messages unacknowledged at once, status included

    def __enter__(self) -> "PahoMqttSink":
        backoff = mqtt_link.Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        client = mqtt_link.make_client(self.settings, "mqtt-out", on_connect=self._on_connect, backoff=backoff,
                                       on_event=self.metrics.inc)
        # paho's queue bounds what is in flight (every queued message is sent at once): with its
        # own in-flight limit left at 0, each PUBACK does not rescan the queue for a message to
        # release. _drain keeps the windows in flight under inflight_max.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(PAHO_QUEUE)
        client.will_set(self.status_topic, self._status("offline", self.fmt, self.topic), qos=1, retain=True)
        self._client = client
        self._loop = NetworkLoop(client, backoff, "mqtt-out", self.settings.address)
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


class NetworkLoop:
    """The client's socket served by a thread of ours through paho's external-loop API
    (``loop_read``/``loop_write``/``loop_misc``, ``on_socket_register_write``).

    Why not ``loop_start``: there every ``publish`` writes a byte to a socket pair to wake
    paho's thread, a system call and, on a busy core, a round of context switches per message.
    Here ``publish`` only queues the packet; paho asks for a wake-up when the socket had nothing
    left to write, and the publisher sends it with :meth:`wake_writer` once its burst is queued,
    so one pass of this thread sends the whole burst. (Woken at the first message instead,
    this thread takes the GIL while the publisher is still queueing and sends a few packets a
    pass: on one core, 4-6 times the passes and wake-ups for the same windows.) Only this thread
    touches the socket, as with ``loop_start``; it reconnects with the client's
    :class:`Backoff` (the delay its disconnect callback announced).
    """

    def __init__(self, client: mqtt.Client, backoff: mqtt_link.Backoff, name: str, address: str) -> None:
        self.client, self.backoff, self.address = client, backoff, address
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()  # no more reconnects: end once the socket is closed
        self._abandon = False  # end now, even with the DISCONNECT unsent
        self._write_pending = False  # packets queued by another thread since the last wake_writer
        client.on_socket_register_write = self._note_write
        self._thread = threading.Thread(target=self._run, name=f"{name}-paho", daemon=True)

    def _note_write(self, *_: Any) -> None:
        # On this loop's own thread nothing is needed: it asks want_write() before every select.
        if threading.get_ident() != self._thread.ident:
            self._write_pending = True

    def wake_writer(self) -> None:
        """After publishing from another thread: one wake-up sends everything queued since the
        last call. Every publish outside this loop's own callbacks must be followed by it."""
        if self._write_pending:
            self._write_pending = False
            self._wake()

    def _wake(self, *_: Any) -> None:
        try:
            self._wake_w.send(b"\x00")
        except OSError:
            pass  # full: a wake-up is pending anyway; closed: we have stopped

    def start(self, settings: MqttSettings) -> None:
        self.client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._thread.start()

    def _run(self) -> None:
        client, delay = self.client, 0.0
        while not self._abandon:
            sock = client.socket()
            if sock is None:
                if self._stopping.is_set() or (delay and self._stopping.wait(delay)):
                    return
                try:
                    client.reconnect()  # blocking connect (and TLS handshake), on this thread only
                except (OSError, ValueError) as exc:
                    delay = self.backoff.next()
                    log.debug("%s: cannot reach %s (%s); retrying in about %.1f s", self._thread.name,
                              self.address, exc, delay)
                continue
            delay = self.backoff.last  # a refused CONNACK or a lost link: the delay the callback announced
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS bytes select cannot see
            try:
                readable, _, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [], [],
                                               0.0 if pending else 1.0)
            except (OSError, ValueError):  # the socket was closed under us
                continue
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(4096)
                except OSError:
                    pass
            rc = client.loop_read() if (sock in readable or pending) else 0
            if not rc and client.want_write():
                rc = client.loop_write()
            if not rc:
                client.loop_misc()

    def stop(self, timeout: float = 2.0) -> None:
        """Disconnect cleanly (this loop writes the DISCONNECT), then end the thread."""
        self._stopping.set()
        self.client.disconnect()
        if self._thread.ident is not None:  # started
            self._wake()
            self._thread.join(timeout)
            self._abandon = True
            self._wake()
            self._thread.join(1.5)
        self._wake_r.close()
        self._wake_w.close()
