"""The MQTT sink over TLS and over links that push back: a broker that stops reading (partial
sends, a full socket, TLS wanting to write) must cost windows at most, never corrupt the stream."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from conftest import Broker, free_port
from runtime_helpers import Recorder
from test_runtime_deploy import make_certificates
from test_runtime_mqtt_sink import CLIENTS, proxies, sink_for, wait, window  # noqa: F401 (proxies: a fixture)

from edge_runtime.metrics import Metrics

pytestmark = pytest.mark.integration


class TlsBroker(Broker):
    """A plain listener (for the test's subscriber) and a TLS one with a private CA."""

    def __init__(self, workdir: Path) -> None:
        make_certificates(workdir)
        self.tls_port = free_port()
        super().__init__(workdir, f"listener {self.tls_port} 127.0.0.1\ncafile {workdir / 'ca.crt'}\n"
                                  f"certfile {workdir / 'gateway.crt'}\nkeyfile {workdir / 'gateway.key'}\n")
        self.ca = str(workdir / "ca.crt")


@pytest.fixture
def tls_broker(tmp_path: Path):
    with TlsBroker(tmp_path) as broker:
        yield broker


@pytest.mark.parametrize("client", CLIENTS)
def test_windows_go_out_in_order_over_tls(tls_broker: TlsBroker, client: str) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}/imu/anon/{{stream}}?client={client}"
    with Recorder(tls_broker.port, "imu/anon/#") as recorder:
        with sink_for(url, ca_file=tls_broker.ca) as sink:
            for start in range(0, 200, 25):
                sink.write_many([window(i) for i in range(start, start + 25)])
                sink.poll()
            sink.flush(timeout=10.0)
        got = recorder.wait_for(200, timeout=10)
    assert [w["index"] for w in got] == list(range(200))


def test_a_broker_certificate_that_does_not_verify_is_logged_and_retried(tls_broker: TlsBroker, caplog) -> None:
    caplog.set_level(logging.INFO)
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}/imu/anon/{{stream}}?buffer=5"
    with sink_for(url) as sink:  # no ca_file: the system's CA store does not know the test's CA
        assert wait(lambda: "TLS with" in caplog.text)
        for i in range(10):
            sink.write(window(i))
            sink.poll()
        assert sink.backlog == 5
    assert "certificate verify failed" in caplog.text and "connected to" not in caplog.text


@pytest.mark.parametrize("tls", [False, True])
def test_a_broker_that_stops_reading_holds_windows_back_without_corrupting_the_stream(tls_broker: TlsBroker,
                                                                                     proxies, tls: bool) -> None:
    proxy = proxies(tls_broker.tls_port if tls else tls_broker.port, parse=False)
    metrics = Metrics()
    url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{proxy.port}/imu/anon/{{stream}}?qos=0&buffer=20000"
    total = 4000  # ~10 MB of JSON: more than the loopback socket buffers hold (~3-4 MB)
    with Recorder(tls_broker.port, "imu/anon/#") as recorder:
        with sink_for(url, metrics, ca_file=tls_broker.ca if tls else "") as sink:
            assert wait(lambda: (sink.poll(), proxy.connections)[1] == 1)
            time.sleep(0.3)
            sink.poll()
            proxy.stall.set()
            started = time.monotonic()
            for start in range(0, total, 100):
                sink.write_many([window(i) for i in range(start, start + 100)])
                sink.poll()
            assert time.monotonic() - started < 20, "a full socket must not block the pipeline"
            assert sink.backlog > 0, "the socket filled up and windows waited in the backlog"
            proxy.stall.clear()
            assert wait(lambda: (sink.poll(), len(recorder.messages))[1] >= total, timeout=60)
            sink.flush(timeout=10.0)
    assert [w["index"] for w in recorder.windows()] == list(range(total))  # intact, in order, none lost
    assert metrics.snapshot().get("publish_dropped", 0) == 0
