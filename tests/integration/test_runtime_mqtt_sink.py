"""The MQTT sink on the wire: the broker's Receive Maximum, MQTT 3.1.1 on request, order and bytes.

A proxy between the sink and a real Mosquitto reads every MQTT packet the sink sends and can
hold back what the broker answers (the PUBACKs), so what is in flight is seen on the wire.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Broker
from runtime_helpers import Recorder

from edge_runtime import payload
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow
from edge_runtime.sinks import PublishSettings, open_sink

pytestmark = pytest.mark.integration
CONNECT, CONNACK, PUBLISH = 1, 2, 3


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


class Proxy:
    """One client <-> broker connection; counts the client's packets; ``hold`` keeps the broker's
    answers after its CONNACK back until ``release``."""

    def __init__(self, broker_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.broker_port = broker_port
        self.hold = threading.Event()
        self.sent: list[tuple[int, int, bytes]] = []  # client -> broker
        self._held = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.broker_port))
        threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
        buf = bytearray()
        while data := client.recv(65536):
            upstream.sendall(data)
            buf += data
            with self._lock:
                self.sent.extend(packets(buf))

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        self._client = client
        while data := upstream.recv(65536):
            with self._lock:
                if self.hold.is_set():
                    self._held += data
                    continue
                client.sendall(data)

    def release(self) -> None:
        with self._lock:
            self.hold.clear()
            self._client.sendall(bytes(self._held))
            self._held.clear()

    def publishes(self) -> list[tuple[int, int, bytes]]:
        with self._lock:
            return [p for p in self.sent if p[0] == PUBLISH]


def sink_for(url: str):
    return open_sink(url, publish=PublishSettings(gateway="test-gw"), mqtt=MqttSettings(reconnect_min_s=0.1,
                     reconnect_max_s=0.5), metrics=Metrics(), status=lambda state, fmt, topic: state.encode())


def wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_sink_keeps_no_more_windows_in_flight_than_the_brokers_receive_maximum(tmp_path: Path) -> None:
    broker = Broker(tmp_path, "max_inflight_messages 5\n")  # mosquitto's Receive Maximum in its CONNACK
    broker.start()
    try:
        proxy = Proxy(broker.port)
        with Recorder(broker.port, "imu/anon/#") as recorder, sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}") as sink:
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
        qos = {(flags >> 1) & 3 for _, flags, _ in proxy.publishes()}
        assert qos == {1}
    finally:
        broker.stop()


@pytest.mark.parametrize(("option", "level"), [("", 5), ("?protocol=3.1.1", 4)])
def test_each_window_is_one_message_of_its_payload_in_mqtt_5_or_3_1_1(broker, option: str, level: int) -> None:
    proxy = Proxy(broker.port)
    with Recorder(broker.port, "imu/anon/#") as recorder:
        with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}{option}") as sink:
            assert wait(lambda: len(proxy.publishes()) == 1)
            for i in range(50):
                sink.write(window(i))
            sink.flush(timeout=5.0)
        got = recorder.wait_for(50, timeout=10)
    connect = next(body for kind, _, body in proxy.sent if kind == CONNECT)
    assert connect[:6] == b"\x00\x04MQTT" and connect[6] == level
    bodies = [p for t, p, _ in recorder.messages if t == "imu/anon/s-0123456789abcdef"]
    assert bodies == [payload.encode(window(i)) for i in range(50)]
    assert [w["index"] for w in got] == list(range(50))


def test_windows_written_in_a_pass_go_out_together_when_the_pipeline_polls(broker) -> None:
    proxy = Proxy(broker.port)
    with sink_for(f"mqtt://127.0.0.1:{proxy.port}/imu/anon/{{stream}}") as sink:
        assert wait(lambda: len(proxy.publishes()) == 1)
        for burst in range(3):
            time.sleep(0.2)  # the network loop idles in its 1 s select: only the wake-up can end it early
            for i in range(10):
                sink.write(window(10 * burst + i))
            started = time.monotonic()
            sink.poll()
            assert wait(lambda: len(proxy.publishes()) == 11 + 10 * burst, timeout=2.0)
            assert time.monotonic() - started < 0.5
        sink.flush(timeout=5.0)
