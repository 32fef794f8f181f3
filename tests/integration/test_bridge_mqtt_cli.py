"""The `device simulate` command against a real Mosquitto broker, and its one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge.decoder import FrameDecoder
from tests.conftest import Broker, free_port, run_cli

pytestmark = pytest.mark.integration


class Subscriber:
    """Collects every message on a topic filter (QoS 1), bounded in time by the caller."""

    def __init__(self, port: int, topic: str, auth: tuple[str, str] | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bridge-test-{os.getpid()}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        if auth:
            self.client.username_pw_set(*auth)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "subscription not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _summary(stdout: str) -> dict[str, int]:
    line = stdout.strip().splitlines()[-1]
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def test_simulator_publishes_one_message_per_frame_and_loss_is_exactly_the_injected(broker) -> None:
    sub = Subscriber(broker.port, "imu/+/raw")
    try:
        out = run_cli("device", "simulate", "--user", "9", "--mqtt", f"{broker.url}", "--qos", "1",
                      "--speed", "max", "--duration", "30", "--drop", "1/9", "--duplicate", "0.05",
                      "--corrupt", "0.05", "--seed", "2", "--format", "float32", "--chip", "mpu6050", timeout=120)
        assert out.returncode == 0, out.stderr
        stats = _summary(out.stdout)
        deadline = threading.Event()
        for _ in range(100):  # bounded wait for the broker to deliver the tail
            if len(sub.messages) >= stats["frames"]:
                break
            deadline.wait(0.05)
    finally:
        sub.close()
    assert {t for t, _ in sub.messages} == {"imu/494d55414e4f4e09/raw"}  # the topic convention
    assert len(sub.messages) == stats["frames"]
    dec = FrameDecoder()
    got = sum(len(b) for _, payload in sub.messages for b in dec.feed_packet(payload))
    assert stats["samples_sent"] == 1500 and stats["dropped"] > 0 and stats["corrupted"] > 0
    assert got == stats["samples_sent"] - stats["samples_lost"]
    assert dec.counters["duplicates"] == stats["duplicated"]


def test_simulate_and_decode_a_capture_file(tmp_path: Path) -> None:
    capture = tmp_path / "u3.imuf"
    out = run_cli("device", "simulate", "--user", "3", "--capture", str(capture), "--speed", "max",
                  "--duration", "20", "--reorder", "1/10", timeout=120)
    assert out.returncode == 0, out.stderr
    stats = _summary(out.stdout)
    assert stats["reordered"] == 9  # frames 10, 20, ... 90 of 100 (the 100th has nothing to pass it)
    dec = run_cli("device", "decode", str(capture), timeout=120)
    assert dec.returncode == 0, dec.stderr
    assert f"device 494d55414e4f4e03: {1000 - 90} samples in 91 frames, 1 epoch(s)" in dec.stdout
    assert "late=9" in dec.stdout


def test_simulator_logs_in_with_the_credentials_of_the_url_and_says_so_when_refused(tmp_path: Path) -> None:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.fail("mosquitto_passwd is missing: it comes with the Debian mosquitto package")
    secrets = tmp_path / "passwd"
    subprocess.run([passwd, "-c", "-b", str(secrets), "wearable", "s3cret"], check=True, timeout=30)
    broker = Broker(tmp_path, f"password_file {secrets}\n")
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    try:
        sub = Subscriber(broker.port, "imu/w/raw", auth=("wearable", "s3cret"))
        try:
            url = f"mqtt://wearable:s3cret@127.0.0.1:{broker.port}/imu/w/raw"
            ok = run_cli("device", "simulate", "--mqtt", url, "--speed", "max", "--duration", "4", timeout=60)
            assert ok.returncode == 0, ok.stderr
            frames = _summary(ok.stdout)["frames"]
            for _ in range(100):
                if len(sub.messages) >= frames:
                    break
                threading.Event().wait(0.05)
        finally:
            sub.close()
        assert len(sub.messages) == frames == 25  # HELLO at 0 and 2 s, 20 SAMPLES, HEARTBEAT at 1, 2, 3 s
        bad = run_cli("device", "simulate", "--mqtt", url.replace("s3cret", "wrong"), "--duration", "1", timeout=60)
        assert bad.returncode == 1
        assert "refused or did not answer" in bad.stderr and "credentials" in bad.stderr
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mqtt", "mqtt://127.0.0.1:{port}/imu/x/raw"), "cannot reach the MQTT broker at 127.0.0.1:{port}"),
        (("--port", "/dev/does-not-exist"), "cannot open serial port /dev/does-not-exist"),
        (("--port", "pty", "--drop", "sometimes"), "write a probability like 0.05 or a period like 1/20"),
        (("--data", "missing.csv", "--port", "pty"), "missing.csv: cannot read"),
        ((), "say where to send frames"),
    ],
)
def test_cli_errors_are_one_line_with_what_to_do(args: tuple[str, ...], message: str) -> None:
    port = str(free_port())
    out = run_cli("device", "simulate", "--duration", "1", *(a.replace("{port}", port) for a in args), timeout=60)
    assert out.returncode == 1
    err = out.stderr.strip().splitlines()
    assert err[-1].startswith("imu-anon device: error: ") and message.replace("{port}", port) in err[-1]
    assert "Traceback" not in out.stderr
