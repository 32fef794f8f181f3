"""The lean MQTT source against a real Mosquitto and against a fake broker on a loopback socket:
messages arrive whole, in order per topic, with the origin and device their topic gives; QoS 1
messages are acknowledged (the broker's in-flight window never stalls); a broker that restarts
or talks nonsense costs a reconnect, never the source."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker
from runtime_helpers import wait
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime import mqtt_wire
from edge_runtime.decode import Received
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.mqtt_source import MAX_PACKET, MqttSource, MqttSourceBase
from edge_runtime.sources import Inbox, SourceContext

pytestmark = pytest.mark.integration
FAST = MqttSettings(reconnect_min_s=0.1, reconnect_max_s=0.3)


class BatchInbox(Inbox):
    """An inbox that remembers how many messages each hand-over carried."""

    def __init__(self) -> None:
        super().__init__(1 << 20, Metrics())
        self.batches: list[int] = []

    def offer_many(self, items: Sequence[Received]) -> int:
        self.batches.append(len(items))
        return super().offer_many(items)


def source_for(url: str) -> MqttSourceBase:
    return MqttSource.from_url(url, SourceContext(model_rate_hz=50.0, metrics=Metrics(), mqtt=FAST))


def collect(inbox: Inbox, count: int, timeout: float = 15.0) -> list[Received]:
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        item = inbox.get(0.05)
        if item is not None:
            got.append(item)
            got += inbox.drain(count - len(got))
    return got


def subscribed(caplog: pytest.LogCaptureFixture, times: int = 1) -> Callable[[], bool]:
    return lambda: caplog.text.count("mqtt-in: subscribed to") >= times


class Publisher:
    """paho-mqtt as an independent real client."""

    def __init__(self, port: int, protocol: str = "5") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_publish_burst(port: int, packets: list[bytes]) -> None:
    """Hand mosquitto many QoS 1 messages at once (one send), as a busy gateway's wearables would."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(mqtt_wire.connect(client_id="burst", protocol="3.1.1"))
        assert sock.recv(4) == bytes.fromhex("20020000")
        sock.sendall(b"".join(packets))
        want, got = 4 * len(packets), 0
        deadline = time.monotonic() + 15
        while got < want and time.monotonic() < deadline:
            got += len(sock.recv(65536))
        sock.sendall(mqtt_wire.disconnect(v5=False))
        assert got == want, "mosquitto did not acknowledge every message of the burst"


@pytest.mark.parametrize(("protocol", "qos", "client"), [
    ("5", 1, "lean"), ("5", 0, "lean"), ("3.1.1", 1, "lean"), ("3.1.1", 0, "lean"), ("5", 1, "paho"),
])
def test_messages_arrive_with_the_origin_device_and_bytes_their_topic_and_payload_give(
        broker: Broker, caplog, protocol: str, qos: int, client: str) -> None:
    caplog.set_level(logging.INFO)
    inbox = Inbox(10_000, Metrics())
    url = f"{broker.url}/imu/+/raw?qos={qos}&protocol={protocol}&client={client}&format=frames"
    publisher = Publisher(broker.port, protocol)
    try:
        with source_for(url) as source:
            assert type(source).__name__ == ("MqttSource" if client == "lean" else "PahoMqttSource")
            source.start(inbox)
            assert wait(subscribed(caplog))
            if client == "lean":  # paho names its own network thread
                assert any(t.name.startswith("mqtt-in") for t in threading.enumerate())
            sent = [(f"imu/wearer-{i % 3}/raw", bytes([i % 256]) * (1 + i % 7) + bytes(range(256)))
                    for i in range(300)]
            for topic, payload in sent:
                publisher.publish(topic, payload, qos=qos)
            got = collect(inbox, len(sent))
    finally:
        publisher.close()
    assert len(got) == len(sent)
    for k in range(3):
        topic = f"imu/wearer-{k}/raw"
        mine = [item for item in got if item.origin == f"mqtt:{topic}"]
        assert [item.data for item in mine] == [payload for t, payload in sent if t == topic]  # all, in order
        assert {(item.device, item.fmt, type(item.data)) for item in mine} == {(f"wearer-{k}", "frames", bytes)}
    assert all(isinstance(item.at, float) for item in got)


def test_a_retained_message_is_taken_like_any_other(broker: Broker, caplog) -> None:
    caplog.set_level(logging.INFO)
    publisher = Publisher(broker.port)
    try:
        publisher.publish("imu/kept/raw", b"retained frame", retain=True).wait_for_publish(5)
        inbox = Inbox(100, Metrics())
        with source_for(f"{broker.url}/imu/+/raw") as source:
            source.start(inbox)
            got = collect(inbox, 1)
    finally:
        publisher.close()
    assert [(item.origin, item.device, item.data) for item in got] == [("mqtt:imu/kept/raw", "kept", b"retained frame")]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_burst_far_beyond_the_brokers_inflight_window_arrives_complete(tmp_path: Path, caplog,
                                                                         protocol: str) -> None:
    caplog.set_level(logging.INFO)
    total = 3000  # mosquitto sends 20 QoS 1 messages unacknowledged; without our PUBACKs it would stall at 20
    packets = [mqtt_wire.publish(f"imu/w{i % 50:02d}/raw", i.to_bytes(4, "big") * 10, 1, i % 65535 + 1, v5=False)
               for i in range(total)]
    inbox = BatchInbox()
    with Broker(tmp_path, extra_config="max_queued_messages 0\n") as broker:
        with source_for(f"{broker.url}/imu/+/raw?protocol={protocol}") as source:
            source.start(inbox)
            assert wait(subscribed(caplog))
            raw_publish_burst(broker.port, packets)
            got = collect(inbox, total)
            time.sleep(0.2)
            assert inbox.qsize() == 0, "more messages than were published"
    assert len(got) == total
    order = [int.from_bytes(item.data[:4], "big") for item in got]
    for w in range(50):
        assert [i for i in order if i % 50 == w] == list(range(w, total, 50))
    assert sum(inbox.batches) == total and max(inbox.batches) > 1  # reads of several messages, handed over at once


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_after_a_broker_restart_the_source_reconnects_resubscribes_receives_and_counts_it(broker: Broker, caplog,
                                                                                        client: str) -> None:
    caplog.set_level(logging.INFO)
    inbox = Inbox(100, Metrics())
    with source_for(f"{broker.url}/imu/+/raw?client={client}") as source:
        source.start(inbox)
        assert wait(subscribed(caplog))
        publisher = Publisher(broker.port)
        publisher.publish("imu/a/raw", b"before").wait_for_publish(5)
        publisher.close()
        assert [item.data for item in collect(inbox, 1)] == [b"before"]
        broker.stop()
        assert wait(lambda: "mqtt-in: lost" in caplog.text)
        time.sleep(1.0)  # a few reconnects fail meanwhile, quietly
        broker.start()
        assert wait(subscribed(caplog, times=2))
        publisher = Publisher(broker.port)
        publisher.publish("imu/b/raw", b"after").wait_for_publish(5)
        publisher.close()
        got = collect(inbox, 1)
    assert [(item.origin, item.data) for item in got] == [("mqtt:imu/b/raw", b"after")]
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("edge_runtime.mqtt")
                and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "reconnecting" in warnings[0]  # the outage is logged once
    assert caplog.text.count("mqtt-in: connected to") == 2
    assert source.metrics.get("mqtt_in_reconnects") == 1


class FakeBroker:
    """A loopback socket server that answers CONNECT and SUBSCRIBE, then sends ``after_subscribe``
    on every connection and records what the client sent (one list of packets per connection)."""

    def __init__(self, *, v5: bool, after_subscribe: bytes = b"", connack: bytes | None = None,
                 answer_pings: bool = True, suback_code: int | None = None) -> None:
        self.v5, self.after_subscribe, self.answer_pings = v5, after_subscribe, answer_pings
        self.suback_code = suback_code  # None: grant the QoS asked for
        self.connack = connack or (bytes.fromhex("2003000000") if v5 else bytes.fromhex("20020000"))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.sessions: list[list[tuple[int, bytes]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-broker", daemon=True)

    def __enter__(self) -> "FakeBroker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()

    def _serve(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline and len(self.sessions) < 50:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                self._session(conn, deadline)

    def _session(self, conn: socket.socket, deadline: float) -> None:
        conn.settimeout(0.1)
        packets: list[tuple[int, bytes]] = []
        self.sessions.append(packets)
        buf = b""
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while (cut := split_packet(buf)) is not None:
                first, body, buf = cut
                packets.append((first, body))
                try:
                    if first == 0x10:
                        conn.sendall(self.connack)
                    elif first == 0x82:
                        qos = body[-1] if self.suback_code is None else self.suback_code
                        conn.sendall(b"\x90" + (b"\x04" + body[:2] + b"\x00" if self.v5 else b"\x03" + body[:2])
                                     + bytes([qos]) + self.after_subscribe)
                    elif first == 0xC0 and self.answer_pings:
                        conn.sendall(mqtt_wire.PINGRESP_PACKET)
                    elif first == 0xE0:
                        return
                except OSError:
                    return


def split_packet(buf: bytes) -> tuple[int, bytes, bytes] | None:
    """(first byte, body, the rest) of the first complete packet in ``buf``, or None."""
    length = 0
    for at in range(1, min(len(buf), 5)):
        length |= (buf[at] & 127) << 7 * (at - 1)
        if buf[at] < 128:
            end = at + 1 + length
            return (buf[0], buf[at + 1:end], buf[end:]) if len(buf) >= end else None
    return None


def publish_packets(count: int, *, v5: bool) -> bytes:
    return b"".join(mqtt_wire.publish(f"imu/f{i % 4}/raw", i.to_bytes(2, "big") * 20, 1, i + 1, v5=v5)
                    for i in range(count))


@pytest.mark.parametrize("v5", [True, False])
def test_each_message_of_a_read_is_acknowledged_and_leaving_says_disconnect(v5: bool, caplog) -> None:
    caplog.set_level(logging.INFO)
    inbox = BatchInbox()
    with FakeBroker(v5=v5, after_subscribe=publish_packets(500, v5=v5)) as fake:
        source = source_for(f"mqtt://127.0.0.1:{fake.port}/imu/+/raw?protocol={'5' if v5 else '3.1.1'}")
        with source:
            source.start(inbox)
            got = collect(inbox, 500)
            assert wait(lambda: sum(first == 0x40 for first, _ in fake.sessions[0]) == 500)
            thread = next(t for t in threading.enumerate() if t.name == source.name)
            left = time.monotonic()
        assert not thread.is_alive() and time.monotonic() - left < 1.0
        assert wait(lambda: fake.sessions[0][-1][0] == 0xE0, 2)
    assert [int.from_bytes(item.data[:2], "big") for item in got] == list(range(500))
    assert [item.device for item in got[:4]] == ["f0", "f1", "f2", "f3"]
    acked = [int.from_bytes(body, "big") for first, body in fake.sessions[0] if first == 0x40]
    assert acked == list(range(1, 501))
    assert max(inbox.batches) > 1 and len(fake.sessions) == 1


@pytest.mark.parametrize(("garbage", "why"), [
    (b"\x00\x00", "starts no packet"),
    (b"\x30" + mqtt_wire.remaining_length(MAX_PACKET + 1) + b"\x00\x01a", "exceeds"),
    (bytes.fromhex("3007 0001 61 03 230001"), "topic alias"),
    (bytes.fromhex("3405 0001 61 0001 00"), "starts no packet"),  # QoS 2 to a QoS 1 subscription
])
def test_a_broker_that_sends_what_is_not_mqtt_costs_a_logged_reconnect(caplog, garbage: bytes, why: str) -> None:
    caplog.set_level(logging.INFO)
    inbox = Inbox(10_000, Metrics())
    good = publish_packets(3, v5=True)
    with FakeBroker(v5=True, after_subscribe=good + garbage) as fake:
        with source_for(f"mqtt://127.0.0.1:{fake.port}/imu/+/raw") as source:
            source.start(inbox)
            assert wait(lambda: len(fake.sessions) >= 2)
    errors = [r for r in caplog.records if r.name == "edge_runtime.mqtt_source" and r.levelno == logging.ERROR]
    assert errors and why in errors[0].getMessage() and "dropped the connection" in errors[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records), "a protocol error is a log line, not a traceback"


def test_a_broker_silent_past_the_keepalive_is_taken_as_gone(caplog) -> None:
    caplog.set_level(logging.INFO)
    keep_alive_2s = bytes.fromhex("2006 0000 03 130002")  # MQTT 5 CONNACK: Server Keep Alive 2 s
    with FakeBroker(v5=True, connack=keep_alive_2s, answer_pings=False) as fake:
        with source_for(f"mqtt://127.0.0.1:{fake.port}/imu/+/raw") as source:
            source.start(Inbox(10, Metrics()))
            assert wait(lambda: len(fake.sessions) >= 2, timeout=8)
    assert any(first == 0xC0 for first, _ in fake.sessions[0]), "no PINGREQ within half the keepalive"
    assert "nothing from the broker for 3 s" in caplog.text


def test_a_subscription_the_broker_refuses_is_an_error_that_names_the_pattern(caplog) -> None:
    caplog.set_level(logging.INFO)
    with FakeBroker(v5=True, suback_code=0x87) as fake:
        with source_for(f"mqtt://127.0.0.1:{fake.port}/imu/+/raw") as source:
            source.start(Inbox(10, Metrics()))
            assert wait(lambda: "refused the subscription" in caplog.text)
    assert "the broker refused the subscription to imu/+/raw (Not authorized); check its ACL" in caplog.text
    assert "subscribed to" not in caplog.text
