"""The throwaway Mosquitto of the bench and the tests: restartable, and clear when it cannot start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge_runtime.benchmark.broker import BrokerError, LocalBroker, Mosquitto


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_broker_restarts_on_the_same_port(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        port = broker.port
        assert listening(port)
        broker.stop()
        assert not listening(port)
        broker.start()
        assert listening(port) and broker.port == port
    assert not listening(port)


def test_a_configuration_mosquitto_refuses_is_reported_with_its_words(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, "no_such_option 1\n")
    with pytest.raises(BrokerError, match="mosquitto exited with status .*no_such_option"):
        broker.start()
    assert broker.proc is None


def test_the_bench_broker_is_gone_after_its_block(tmp_path: Path) -> None:
    with LocalBroker() as local:
        port = local.port
        assert local.url == f"mqtt://127.0.0.1:{port}" and listening(port)
    assert not listening(port)
    with pytest.raises(BrokerError, match="outside its 'with' block"):
        local.url
