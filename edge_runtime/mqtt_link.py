"""What MQTT sources and sinks share: connection settings, URL parsing, a paho client with
capped, jittered reconnects.

paho-mqtt 2.x with ``CallbackAPIVersion.VERSION2`` and MQTT v5 (``protocol = "3.1.1"``, or
``?protocol=3.1.1`` in a URL, for brokers without it). paho's own network thread
(``loop_start``) reconnects forever; its delay is exponential without jitter, so after a
broker restart every gateway would come back at the same instant. Before each wait we set
the next delay from our :class:`Backoff` through the public ``reconnect_delay_set``.
The sink runs the client on :class:`NetworkLoop` instead (see there why), with the same delays.
Passwords never travel in URLs (they would show in ``ps`` and in logs): they come from the
configuration's ``password_file`` or the ``IMU_ANON_MQTT_PASSWORD`` environment variable.
"""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl

from edge_runtime.errors import ConfigError

if TYPE_CHECKING:  # paho (and ssl) load only when an MQTT source or sink is made: the settings are everywhere
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

PASSWORD_ENV = "IMU_ANON_MQTT_PASSWORD"
PROTOCOLS = ("5", "3.1.1")


class Backoff:
    """Exponential delays from ``initial`` doubling to ``cap``, each scaled by a random factor in
    [1 - jitter, 1 + jitter] so that many clients spread their retries."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, jitter: float = 0.3,
                 rng: random.Random | None = None) -> None:
        if not (0 < initial <= cap) or not (0 <= jitter < 1):
            raise ConfigError(f"backoff needs 0 < initial <= cap and 0 <= jitter < 1, got {initial}, {cap}, {jitter}")
        self.initial, self.cap, self.jitter = initial, cap, jitter
        self._rng = rng or random.Random()
        self._attempt = 0
        self.last = initial  # the delay next() returned last

    def next(self) -> float:
        base = min(self.cap, self.initial * (2 ** self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        self.last = base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        return self.last

    def reset(self) -> None:
        self._attempt = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str = ""  # empty with tls: the system's CA store
    cert_file: str = ""  # client certificate (mutual TLS), optional
    key_file: str = ""
    tls_insecure: bool = False  # skip hostname checking (a test broker on an IP); never in production
    username: str = ""
    password_file: str = ""
    client_id: str = ""  # empty: imu-anon-<random>; set it when the broker's ACL keys on client ids
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    protocol: str = "5"  # MQTT version: 5, or 3.1.1 for brokers that lack 5

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"mqtt protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if not (0 < self.port < 65536):
            raise ConfigError(f"mqtt port must be 1..65535, got {self.port}")
        if not (5 <= self.keepalive_s <= 65535):
            raise ConfigError(f"mqtt keepalive_s must be 5..65535, got {self.keepalive_s}")
        if not (0 < self.reconnect_min_s <= self.reconnect_max_s):
            raise ConfigError("mqtt reconnect_min_s must be positive and at most reconnect_max_s")
        for name in ("ca_file", "cert_file", "key_file", "password_file"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_file():
                raise ConfigError(f"mqtt {name} {value!r} does not exist")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt cert_file and key_file go together (client certificate and its key)")

    def password(self) -> str | None:
        if self.password_file:
            return Path(self.password_file).expanduser().read_text(encoding="utf-8").strip()
        return os.environ.get(PASSWORD_ENV) or None

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


_URL_KEYS = {"client_id", "ca", "cert", "key", "insecure", "username", "keepalive", "protocol"}


def parse_url(url: str, defaults: MqttSettings, extra_keys: set[str]) -> tuple[MqttSettings, str, dict[str, str]]:
    """``mqtt[s]://host[:port]/topic/+/levels?k=v`` -> (settings, topic, the other query keys).
    A ``#`` in the topic may be written as is or as ``%23``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"{url!r}: an MQTT URL looks like mqtt://host:1883/topic or mqtts://host:8883/topic")
    rest, _, query = rest.partition("?")
    hostport, _, topic = rest.partition("/")
    topic = topic.replace("%23", "#").replace("%2B", "+")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(params) - _URL_KEYS - extra_keys
    if unknown:
        raise ConfigError(f"{url!r}: unknown parameter(s) {sorted(unknown)}; known: {sorted(_URL_KEYS | extra_keys)}")
    changes: dict[str, Any] = {"host": host or defaults.host, "tls": scheme == "mqtts" or defaults.tls}
    try:
        changes["port"] = int(port) if port else (8883 if scheme == "mqtts" else defaults.port)
        if "keepalive" in params:
            changes["keepalive_s"] = int(params["keepalive"])
    except ValueError:
        raise ConfigError(f"{url!r}: port and keepalive must be integers") from None
    for key, field_name in (("client_id", "client_id"), ("ca", "ca_file"), ("cert", "cert_file"),
                            ("key", "key_file"), ("username", "username"), ("protocol", "protocol")):
        if key in params:
            changes[field_name] = params[key]
    if "insecure" in params:
        changes["tls_insecure"] = params["insecure"] in ("1", "true", "yes")
    settings = replace(defaults, **changes)
    return settings, topic, {k: v for k, v in params.items() if k in extra_keys}


def make_client(settings: MqttSettings, role: str, *, on_connect: Callable[..., None],
                on_disconnect: Callable[..., None] | None = None, backoff: Backoff | None = None) -> mqtt.Client:
    """A configured, not yet connected paho client; ``role`` names it in logs and client ids.
    ``on_connect(client, properties)`` gets the CONNACK's properties (None in MQTT 3.1.1)."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client_id = settings.client_id or f"imu-anon-{role}-{uuid.uuid4().hex[:8]}"
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    if settings.tls:
        try:
            client.tls_set(ca_certs=settings.ca_file or None, certfile=settings.cert_file or None,
                           keyfile=settings.key_file or None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt TLS files cannot be used ({exc}); check ca_file, cert_file and key_file") from None
        client.tls_insecure_set(settings.tls_insecure)
    backoff = backoff or Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
    client.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
    state = {"up": False}

    def _on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: %s refused the connection: %s", role, settings.address, reason)
            c.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
            return
        backoff.reset()
        c.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
        state["up"] = True
        log.info("%s: connected to %s", role, settings.address)
        on_connect(c, props if protocol == mqtt.MQTTv5 else None)

    def _on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        delay = backoff.next()
        c.reconnect_delay_set(delay, settings.reconnect_max_s)
        if state["up"] and not reason.is_failure:  # our own disconnect() at shutdown, or the broker's normal one
            log.info("%s: disconnected from %s (%s)", role, settings.address, reason)
        elif state["up"]:
            log.warning("%s: lost %s (%s); reconnecting in about %.1f s", role, settings.address, reason, delay)
        state["up"] = False
        if on_disconnect:
            on_disconnect(c)

    def _on_connect_fail(c: mqtt.Client, userdata: Any) -> None:
        delay = backoff.next()
        c.reconnect_delay_set(delay, settings.reconnect_max_s)
        log.debug("%s: cannot reach %s; retrying in about %.1f s", role, settings.address, delay)

    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    client.on_connect_fail = _on_connect_fail
    return client


def start(client: mqtt.Client, settings: MqttSettings) -> None:
    """Connect in the background: the broker may come up after us, and paho keeps retrying."""
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()


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

    def __init__(self, client: mqtt.Client, backoff: Backoff, name: str, address: str) -> None:
        self.client, self.backoff, self.address = client, backoff, address
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()  # no more reconnects: end once the socket is closed
        self._abandon = False  # end now, even with the DISCONNECT unsent
        self._write_pending = False  # packets queued by another thread since the last wake_writer
        client.on_socket_register_write = self._note_write
        self._thread = threading.Thread(target=self._run, name=f"paho-{name}", daemon=True)

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
