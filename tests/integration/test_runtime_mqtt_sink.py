"""The MQTT sinks on the wire (the lean client and, where the behaviour is shared, paho's): the
broker's Receive Maximum, MQTT 3.1.1 on request, order and bytes, the status and the will,
re-sending after a broken link, a broker restart, a wrong password, a broker that stops answering.

A proxy between the sink and a real Mosquitto reads every MQTT packet the sink sends, can hold
back what the broker answers (the PUBACKs) and can cut the connection without a DISCONNECT.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Broker
from runtime_helpers import Recorder, wait

from edge_runtime import payload
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow
from edge_runtime.sinks import PublishSettings, open_sink

pytestmark = pytest.mark.integration
CONNECT, CONNACK, PUBLISH, DISCONNECT = 1, 2, 3, 14
CLIENTS = ["lean", "paho"]
STATUS = "imu/gateway/test-gw/status"


def window(index: int) -> AnonymisedWindow:
    values = np.full((2, 128), index / 7.0, dtype=np.float32)
    return AnonymisedWindow(stream="s-0123456789abcdef", segment=0, index=index, t0=index * 0.2, rate_hz=50.0,
                            channels=("acc_mag", "gyro_mag"), units=("g", "rad/s"), values=values,
                            model="9c1d2e3f4a5b", ready_at=0.0, token=_ANONYMISER_TOKEN)


def packets(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Complete MQTT packets cut from the front of ``buf``: (type, flags, body)."""
    out = []
    while len(buf) >= 2:
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return out
            length += (buf[i] & 127) * mult
            mult *= 128
            i += 1
            if not buf[i - 1] & 128:
                break
        if len(buf) < i + length:
            return out
        out.append((buf[0] >> 4, buf[0] & 15, bytes(buf[i:i + length])))
        del buf[:i + length]
    return out


def publish_index(body: bytes) -> int | None:
    """The window index of a PUBLISH body (topic, packet id, MQTT 5 properties, payload), or None (status)."""
    topic_len = int.from_bytes(body[:2], "big")
    if body[2:2 + topic_len].decode().startswith("imu/gateway/"):
        return None
    return payload.decode(body[body.index(b"{"):])["index"]


class Proxy:
    """Client <-> broker connections, one after the other: the n-th goes to ``broker_ports[n]`` (the
    last one repeats). ``sent`` has every packet the client sent as (connection, type, flags, body);
    ``hold`` keeps the broker's answers after its CONNACK back until ``release``; ``stall`` stops
    reading what the client sends (as a broker that stops reading); ``cut`` drops the connection.
    ``parse=False`` for TLS, whose bytes are no MQTT packets to the proxy."""

    def __init__(self, *broker_ports: int, parse: bool = True) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.broker_ports = broker_ports
        self.hold, self.stall, self.parse = threading.Event(), threading.Event(), parse
        self.sent: list[tuple[int, int, int, bytes]] = []
        self.connections = 0
        self._held = bytearray()
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.broker_ports[min(self.connections,
                                                                                     len(self.broker_ports) - 1)]))
            with self._lock:
                index, self.connections = self.connections, self.connections + 1
                self._pair, self._held = (client, upstream), bytearray()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._up, args=(index, client, upstream), daemon=True).start()

    def _up(self, index: int, client: socket.socket, upstream: socket.socket) -> None:
        buf = bytearray()
        try:
            while True:
                while self.stall.is_set() and not self._closed:
                    time.sleep(0.01)
                data = client.recv(65536)
                if not data:
                    break
                upstream.sendall(data)
                if self.parse:
                    buf += data
                    with self._lock:
                        self.sent.extend((index, *p) for p in packets(buf))
        except OSError:
            pass
        finally:
            upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        connack = True  # the broker's first answer always passes: a held CONNACK would stall the connect
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    if self.hold.is_set() and not connack:
                        self._held += data
                        continue
                    connack = False
                    client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def release(self) -> None:
        with self._lock:
            self.hold.clear()
            if self._pair is not None:
                self._pair[0].sendall(bytes(self._held))
            self._held.clear()

    def cut(self) -> None:
        """Both sides see the connection end without a DISCONNECT (a dead link): the broker
        publishes the will; the sink notices at its next read."""
        with self._lock:
            pair, self._pair = self._pair, None
        for sock in pair or ():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def publishes(self, connection: int | None = None) -> list[tuple[int, bytes]]:
        """(flags, body) of the client's PUBLISH packets, of one connection or all."""
        with self._lock:
            return [(flags, body) for index, kind, flags, body in self.sent
                    if kind == PUBLISH and connection in (None, index)]

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


@pytest.fixture
def proxies():
    made: list[Proxy] = []

    def make(*ports: int, parse: bool = True) -> Proxy:
        made.append(Proxy(*ports, parse=parse))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def sink_for(url: str, metrics: Metrics | None = None, **mqtt_settings):
    settings = MqttSettings(**{"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **mqtt_settings})
    return open_sink(url, publish=PublishSettings(gateway="test-gw"), mqtt=settings, metrics=metrics or Metrics(),
                     status=lambda state, fmt, topic: state.encode())


@pytest.mark.parametrize("client", CLIENTS)
def test_the_sink_keeps_no_more_windows_in_flight_than_the_brokers_receive_maximum(tmp_path: Path, proxies,
                                                                                   client: str) -> None:
    broker = Broker(tmp_path, "max_inflight_messages 5\n")  # mosquitto's Receive Maximum in its CONNACK
    broker.start()
    try:
        proxy = proxies(broker.port)
        url = f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}?client={client}"
        with Recorder(broker.port, "imu/anon/#") as recorder, sink_for(url) as sink:
            assert wait(lambda: len(proxy.publishes()) == 1)  # the retained status: CONNACK read
            proxy.hold.set()  # from now on no PUBACK reaches the sink
            for i in range(30):
                sink.write(window(i))
                sink.poll()
            time.sleep(0.5)
            held = proxy.publishes()
            assert sink.inflight_max == 5
            assert len(held) == 5, "the status and 4 windows, no more, before the broker acknowledges any"
            proxy.release()
            assert wait(lambda: (sink.poll(), len(recorder.windows()))[1] == 30)
            sink.flush(timeout=5.0)
        assert [w["index"] for w in recorder.windows()] == list(range(30))  # in order, each once
        qos = {(flags >> 1) & 3 for flags, _ in proxy.publishes()}
        assert qos == {1}
    finally:
        broker.stop()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("option", "level", "qos"), [("", 5, 1), ("&protocol=3.1.1", 4, 1), ("&qos=0", 5, 0),
                                                      ("&protocol=3.1.1&qos=0", 4, 0)])
def test_each_window_is_one_message_of_its_payload_in_mqtt_5_or_3_1_1(broker, proxies, option: str, level: int,
                                                                      qos: int, client: str) -> None:
    proxy = proxies(broker.port)
    with Recorder(broker.port, "imu/anon/#") as recorder:
        with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}?client={client}{option}") as sink:
            assert wait(lambda: len(proxy.publishes()) == 1)
            for i in range(50):
                sink.write(window(i))
            sink.write_many([window(i) for i in range(50, 80)])
            sink.flush(timeout=5.0)
        got = recorder.wait_for(80, timeout=10)
    connect = next(body for _, kind, _, body in proxy.sent if kind == CONNECT)
    assert connect[:6] == b"\x00\x04MQTT" and connect[6] == level
    bodies = [p for t, p, _ in recorder.messages if t == "imu/anon/s-0123456789abcdef"]
    assert bodies == [payload.encode(window(i)) for i in range(80)]
    assert [w["index"] for w in got] == list(range(80))
    assert {(flags >> 1) & 3 for flags, body in proxy.publishes() if publish_index(body) is not None} == {qos}
    assert wait(lambda: proxy.sent[-1][1] == DISCONNECT), "a clean shutdown ends with DISCONNECT"


@pytest.mark.parametrize("client", CLIENTS)
def test_windows_written_in_a_pass_go_out_together_when_the_pipeline_polls(broker, proxies, client: str) -> None:
    proxy = proxies(broker.port)
    with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}?client={client}") as sink:
        assert wait(lambda: len(proxy.publishes()) == 1)
        for burst in range(3):
            time.sleep(0.2)  # paho's network loop idles in its 1 s select: only the wake-up can end it early
            for i in range(10):
                sink.write(window(10 * burst + i))
            started = time.monotonic()
            sink.poll()
            assert wait(lambda: len(proxy.publishes()) == 11 + 10 * burst, timeout=2.0)
            assert time.monotonic() - started < 0.5
        sink.flush(timeout=5.0)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_retained_status_says_online_at_each_connect_offline_at_exit_and_the_will_covers_a_dead_link(
        broker, proxies, client: str) -> None:
    proxy = proxies(broker.port)
    with Recorder(broker.port, STATUS) as recorder:
        with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}?client={client}") as sink:
            assert wait(lambda: [p for _, p, _ in recorder.messages] == [b"online"])
            proxy.cut()  # no DISCONNECT: the broker publishes the last will, then the sink comes back
            assert wait(lambda: (sink.poll(), [p for _, p, _ in recorder.messages])[1]
                        == [b"online", b"offline", b"online"])
            for i in range(5):
                sink.write(window(i))
            sink.flush(timeout=5.0)
        assert wait(lambda: [p for _, p, _ in recorder.messages][-1:] == [b"offline"])
    with Recorder(broker.port, STATUS) as late:  # a consumer that comes later reads the retained state
        assert wait(lambda: late.messages == [(STATUS, b"offline", True)])


def test_windows_unacknowledged_when_a_link_breaks_are_sent_again_first_in_order_within_the_new_receive_maximum(
        tmp_path: Path, proxies) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Broker(tmp_path / "a"), Broker(tmp_path / "b", "max_inflight_messages 5\n")
    first.start()
    second.start()
    try:
        proxy = proxies(first.port, second.port)  # the link comes back on a broker that takes 5 at a time
        with Recorder(second.port, "imu/anon/#") as recorder:
            with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}") as sink:
                assert wait(lambda: len(proxy.publishes(0)) == 1)
                proxy.hold.set()
                sink.write_many([window(i) for i in range(15)])
                sink.write_many([window(i) for i in range(15, 25)])  # 19 in flight (Receive Maximum 20), 6 wait
                assert wait(lambda: len(proxy.publishes(0)) == 20)
                proxy.cut()
                assert wait(lambda: (sink.poll(), proxy.connections)[1] == 2)
                assert wait(lambda: (sink.poll(), len(proxy.publishes(1)))[1] == 5)
                time.sleep(0.3)
                sink.poll()
                again = proxy.publishes(1)
                assert len(again) == 5, "the status and 4 windows: the new broker's Receive Maximum"
                assert [publish_index(body) for _, body in again] == [None, 0, 1, 2, 3]
                assert [bool(flags & 8) for flags, _ in again] == [False, True, True, True, True]  # DUP
                proxy.release()
                assert wait(lambda: (sink.poll(), len(recorder.windows()))[1] >= 25)
                sink.flush(timeout=5.0)
            indices = [w["index"] for w in recorder.windows()]
        assert indices == list(range(25))
        dup = [publish_index(body) for flags, body in proxy.publishes(1) if flags & 8]
        assert dup == list(range(19)), "the 19 unacknowledged windows, each re-sent once, with DUP"
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_no_window_is_lost_when_the_broker_restarts_mid_stream_and_the_reconnect_is_counted(tmp_path: Path,
                                                                                          client: str) -> None:
    # A broker that saves sessions, so the subscriber keeps its subscription over the restart.
    broker = Broker(tmp_path, extra_config=f"persistence true\npersistence_location {tmp_path}/\n")
    broker.start()
    metrics = Metrics()
    try:
        with Recorder(broker.port, "imu/anon/#", persistent=True) as recorder, \
                sink_for(f"{broker.url}/imu/anon/{{stream}}?client={client}&buffer=1000", metrics) as sink:
            for i in range(200):
                if i == 60:
                    broker.stop()
                if i == 140:
                    broker.start()
                sink.write_many([window(i)])
                sink.poll()
                time.sleep(0.01)
            assert wait(lambda: (sink.poll(), len({w["index"] for w in recorder.windows()}))[1] == 200, timeout=20)
            sink.flush(timeout=5.0)
    finally:
        broker.stop()
    indices = [w["index"] for w in recorder.windows()]
    assert sorted(set(indices)) == list(range(200))  # QoS 1: at least once, duplicates allowed
    assert metrics.snapshot().get("publish_dropped", 0) == 0
    assert metrics.get("mqtt_out_reconnects") == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_a_wrong_password_is_logged_with_the_brokers_reason_and_windows_wait(tmp_path: Path, caplog,
                                                                             monkeypatch, client: str) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gateway", "right"], check=True,
                   capture_output=True, timeout=30)
    broker = Broker(tmp_path, f"allow_anonymous false\npassword_file {passwd}\n")
    broker.start()
    monkeypatch.setenv("IMU_ANON_MQTT_PASSWORD", "wrong")
    caplog.set_level(logging.INFO)
    try:
        with sink_for(f"{broker.url}/imu/anon/{{stream}}?client={client}&buffer=10", username="gateway") as sink:
            assert wait(lambda: "refused the connection" in caplog.text)
            for i in range(30):
                sink.write(window(i))
                sink.poll()
            assert sink.backlog == 10
            started = time.monotonic()
        assert time.monotonic() - started < 5.0
    finally:
        broker.stop()
    line = next(r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage())
    assert "Not authorized" in line or "Bad user name or password" in line
    assert "wrong" not in caplog.text and "mqtt-out: connected" not in caplog.text


def test_a_broker_that_stops_answering_is_dropped_after_a_keepalive_without_a_ping_answer(broker, proxies,
                                                                                         caplog) -> None:
    proxy = proxies(broker.port)
    caplog.set_level(logging.INFO)
    with Recorder(broker.port, "imu/anon/#") as recorder, \
            sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}", keepalive_s=5) as sink:
        assert wait(lambda: len(proxy.publishes()) == 1)
        proxy.hold.set()  # the broker's side goes silent: no PUBACK, no PINGRESP
        sink.write_many([window(i) for i in range(3)])
        assert wait(lambda: (sink.poll(), proxy.connections)[1] == 2, timeout=14)
        assert "no answer to a ping within 5 s" in caplog.text
        proxy.release()
        assert wait(lambda: (sink.poll(), len(recorder.windows()))[1] >= 3)
        sink.flush(timeout=5.0)
    assert sorted({w["index"] for w in recorder.windows()}) == [0, 1, 2]


def test_the_sink_url_names_its_client_and_an_unknown_one_lists_the_known() -> None:
    from edge_runtime.mqtt_sink import MqttSink
    from edge_runtime.mqtt_sink_paho import PahoMqttSink

    assert type(sink_for("mqtt://127.0.0.1:1/imu/anon/{stream}")) is MqttSink
    assert type(sink_for("mqtt://127.0.0.1:1/imu/anon/{stream}?client=paho")) is PahoMqttSink
    assert type(sink_for("mqtt://127.0.0.1:1/imu/anon/{stream}?qos=2")) is PahoMqttSink  # lean: QoS 0 and 1
    with pytest.raises(ConfigError, match="unknown MQTT client 'fast'; known: lean, paho"):
        sink_for("mqtt://127.0.0.1:1/imu/anon/{stream}?client=fast")
