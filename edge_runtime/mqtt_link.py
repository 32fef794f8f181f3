"""What MQTT sources and sinks share: connection settings, URL parsing, TLS, a paho client with
capped, jittered reconnects, and the blocking connect of the lean sink (:func:`dial`).

paho-mqtt 2.x with ``CallbackAPIVersion.VERSION2`` and MQTT v5 (``protocol = "3.1.1"``, or
``?protocol=3.1.1`` in a URL, for brokers without it). paho's own network thread
(``loop_start``) reconnects forever; its delay is exponential without jitter, so after a
broker restart every gateway would come back at the same instant. Before each wait we set
the next delay from our :class:`Backoff` through the public ``reconnect_delay_set``.
The paho sink (``edge_runtime.mqtt_sink_paho``) runs it on its own loop with the same delays;
the default sink speaks MQTT itself (``edge_runtime.mqtt_wire``) and only borrows
:class:`Backoff`, the settings, :func:`tls_context` and :func:`dial`.
Passwords never travel in URLs (they would show in ``ps`` and in logs): they come from the
configuration's ``password_file`` or the ``IMU_ANON_MQTT_PASSWORD`` environment variable.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence
from urllib.parse import parse_qsl

from edge_runtime import mqtt_wire
from edge_runtime.errors import ConfigError, SinkError

if TYPE_CHECKING:  # paho (and ssl) load only when an MQTT source or sink is made: the settings are everywhere
    import ssl

    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

PASSWORD_ENV = "IMU_ANON_MQTT_PASSWORD"
PROTOCOLS = ("5", "3.1.1")
CONNECT_TIMEOUT_S = 10.0  # TCP connect, TLS handshake, CONNACK: each


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
    client_id: str = ""  # empty: random; for an ACL keyed on ids, one per connection to a broker (?client_id=)
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


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def check_client_ids(uses: Sequence[tuple[str, MqttSettings]]) -> None:
    """Refuse two connections to one broker under one client id: the broker keeps one
    connection per client id, so each would drop the other whenever it reconnects, forever.
    ``uses``: each MQTT source or sink URL with its settings. Connections without a client id
    get a random one; one id on two brokers is fine. A broker is its host as written (no name
    is looked up at start-up), except that every name of this machine's loopback is one."""
    seen: dict[tuple[str, int, str], str] = {}
    for url, settings in uses:
        if not settings.client_id:
            continue
        host = settings.host.lower().strip("[]")
        key = ("loopback" if host in _LOOPBACK else host, settings.port, settings.client_id)
        if key in seen:
            raise ConfigError(
                f"{seen[key]!r} and {url!r} both connect to {settings.address} as client id "
                f"{settings.client_id!r}; the broker keeps one connection per client id, so each would disconnect "
                "the other, over and over. Give one of the URLs its own ?client_id= (e.g. "
                f"?client_id={settings.client_id}-2; mqtt.client_id applies to every MQTT URL that sets none)")
        seen[key] = url


CLIENTS = ("lean", "paho")  # ?client= on an MQTT source or sink URL


def wants_paho(client: str, qos: int) -> bool:
    """Whether paho-mqtt serves ``?client=`` at ``qos``: asked for, or QoS 2, which our own
    clients do not speak."""
    if client not in CLIENTS:
        raise ConfigError(f"unknown MQTT client {client!r}; known: {', '.join(CLIENTS)}")
    return client == "paho" or qos == 2


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The client side of TLS from the settings: the broker's certificate is always verified
    (``ca_file``, else the system's CA store); ``tls_insecure`` skips only the host name check."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if settings.ca_file:
            context.load_verify_locations(cafile=str(Path(settings.ca_file).expanduser()))
        else:
            context.load_default_certs()
        if settings.cert_file:
            cert, key = Path(settings.cert_file).expanduser(), Path(settings.key_file).expanduser()
            context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt TLS files cannot be used ({exc}); check ca_file, cert_file and key_file") from None
    context.check_hostname = not settings.tls_insecure
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Connections:
    """One client's accepted connections, each logged; every one after the first is a reconnect,
    counted through ``on_event`` as ``<role>_reconnects`` (``mqtt_in_reconnects``,
    ``mqtt_out_reconnects``), as the serial port counts ``serial_reconnects``."""

    def __init__(self, role: str, address: str, on_event: Callable[[str], None]) -> None:
        self.role, self.address, self._on_event = role, address, on_event
        self._counter = f"{role.replace('-', '_')}_reconnects"
        self.count = 0

    def connected(self) -> None:
        log.info("%s: connected to %s", self.role, self.address)
        if self.count:
            self._on_event(self._counter)
        self.count += 1


class RefusedError(SinkError):
    """The broker answered CONNECT with a refusal: wrong user name or password, a client not
    authorised, ... (``connack.reason`` says which); fix the credentials or the broker's ACL."""

    def __init__(self, connack: mqtt_wire.ConnAck) -> None:
        self.connack = connack
        super().__init__(connack.reason)


class Link(NamedTuple):
    """A connected, non-blocking socket and what the broker said on it so far."""

    sock: socket.socket
    reader: mqtt_wire.PacketReader  # holds any bytes after the CONNACK
    connack: mqtt_wire.ConnAck
    rest: list[tuple[int, bytes]]  # packets that arrived with the CONNACK


def dial(settings: MqttSettings, tls: ssl.SSLContext | None, connect: bytes, then: bytes, *, v5: bool) -> Link:
    """Blocking, each step bounded by ``CONNECT_TIMEOUT_S``: TCP (+ TLS), ``connect`` (a CONNECT
    packet), the CONNACK, then ``then`` (what goes first on an accepted connection). Raises
    OSError (``ssl.SSLError`` included), :class:`~edge_runtime.mqtt_wire.MqttProtocolError` or
    :class:`RefusedError`."""
    sock = socket.create_connection((settings.host, settings.port), timeout=CONNECT_TIMEOUT_S)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=settings.host)
        sock.sendall(connect)
        reader = mqtt_wire.PacketReader(v5=v5)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed by the broker before its CONNACK")
            acked, _, packets = reader.feed(data)
            if acked or packets and packets[0][0] != mqtt_wire.CONNACK << 4:
                raise mqtt_wire.MqttProtocolError("the broker's first packet is not a CONNACK")
            if packets:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("no CONNACK")
        connack = mqtt_wire.parse_connack(packets[0][1], v5)
        if not connack.accepted:
            raise RefusedError(connack)
        sock.sendall(then)
        sock.setblocking(False)
        return Link(sock, reader, connack, packets[1:])
    except BaseException:
        sock.close()
        raise


def try_dial(settings: MqttSettings, tls: ssl.SSLContext | None, connect: bytes, then: bytes, *, v5: bool,
             backoff: Backoff, role: str, quiet: bool = False) -> Link | float:
    """:func:`dial`, or, where it fails, the failure logged for ``role`` ("mqtt-in", "mqtt-out")
    and the seconds to wait before the next try. A broker out of reach is a warning unless
    ``quiet`` (the caller already said so for this outage); a refusal or a TLS failure, which
    need the user, always are."""
    import ssl

    try:
        return dial(settings, tls, connect, then, v5=v5)
    except RefusedError as exc:
        level, why = logging.WARNING, (f"{settings.address} refused the connection: {exc} (check mqtt.username, "
                                       "the password and the broker's ACL)")
    except ssl.SSLError as exc:
        level, why = logging.WARNING, (f"TLS with {settings.address} failed ({exc}); check mqtt.ca_file and the "
                                       "broker's certificate")
    except (OSError, mqtt_wire.MqttProtocolError) as exc:
        level, why = logging.DEBUG if quiet else logging.WARNING, f"cannot reach {settings.address} ({exc})"
    delay = backoff.next()
    log.log(level, "%s: %s; retrying in about %.1f s", role, why, delay)
    return delay


def make_client(settings: MqttSettings, role: str, *, on_connect: Callable[..., None],
                on_disconnect: Callable[..., None] | None = None, backoff: Backoff | None = None,
                on_event: Callable[[str], None] = lambda name: None) -> mqtt.Client:
    """A configured, not yet connected paho client; ``role`` names it in logs, client ids and
    its reconnect counter (:class:`Connections`, reported through ``on_event``).
    ``on_connect(client, properties)`` gets the CONNACK's properties (None in MQTT 3.1.1)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client_id = settings.client_id or f"imu-anon-{role}-{uuid.uuid4().hex[:8]}"
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    if settings.tls:
        client.tls_set_context(tls_context(settings))
        client.tls_insecure_set(settings.tls_insecure)
    backoff = backoff or Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
    client.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
    state = {"up": False}
    connections = Connections(role, settings.address, on_event)

    def _on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: %s refused the connection: %s", role, settings.address, reason)
            c.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
            return
        backoff.reset()
        c.reconnect_delay_set(backoff.next(), settings.reconnect_max_s)
        state["up"] = True
        connections.connected()
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
