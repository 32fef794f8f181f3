"""What MQTT sources and sinks share: connection settings, URL parsing, a paho client with
capped, jittered reconnects.

paho-mqtt 2.x with ``CallbackAPIVersion.VERSION2`` and MQTT v5. paho's own network thread
(``loop_start``) reconnects forever; its delay is exponential without jitter, so after a
broker restart every gateway would come back at the same instant. Before each wait we set
the next delay from our :class:`Backoff` through the public ``reconnect_delay_set``.
Passwords never travel in URLs (they would show in ``ps`` and in logs): they come from the
configuration's ``password_file`` or the ``IMU_ANON_MQTT_PASSWORD`` environment variable.
"""

from __future__ import annotations

import logging
import os
import random
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

    def next(self) -> float:
        base = min(self.cap, self.initial * (2 ** self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

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

    def __post_init__(self) -> None:
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


_URL_KEYS = {"client_id", "ca", "cert", "key", "insecure", "username", "keepalive"}


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
                            ("key", "key_file"), ("username", "username")):
        if key in params:
            changes[field_name] = params[key]
    if "insecure" in params:
        changes["tls_insecure"] = params["insecure"] in ("1", "true", "yes")
    settings = replace(defaults, **changes)
    return settings, topic, {k: v for k, v in params.items() if k in extra_keys}


def make_client(settings: MqttSettings, role: str, *, on_connect: Callable[..., None],
                on_disconnect: Callable[..., None] | None = None) -> mqtt.Client:
    """A configured, not yet connected paho client; ``role`` names it in logs and client ids."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client_id = settings.client_id or f"imu-anon-{role}-{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
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
    backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
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
        on_connect(c)

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
