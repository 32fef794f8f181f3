"""The shipped Mosquitto template, for real: TLS, a credential per wearable, the ACL, the upstream bridge.

The template is rendered with this test's paths and ports (every substitution must apply, so
the test breaks if the template drifts) and the runtime talks to it over TLS with a password.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker, free_port
from model_factory import build_model
from paho.mqtt.enums import CallbackAPIVersion
from runtime_helpers import Recorder, frames_for, run_args, signal, spawn  # noqa: F401 (spawn is a fixture)

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "edge_runtime" / "deploy"
W, HOP = 128, 64
WEARABLE, OTHER = "00000000000000aa", "00000000000000bb"


def make_certificates(folder: Path) -> None:
    """A private CA and a broker certificate for 127.0.0.1 (openssl, 1 day)."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=imu-anon test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "gateway.key",
        "-out", "gateway.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "gateway.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", "san.ext", "-out", "gateway.crt")


def render(template: str, swaps: list[tuple[str, str]]) -> str:
    for old, new in swaps:
        assert old in template, f"the template no longer has {old!r}: update this test with it"
        template = template.replace(old, new)
    return template


class GatewayBroker(Broker):
    """mosquitto running edge_runtime/deploy/mosquitto.conf (+ .acl), rendered for this test."""

    def __init__(self, workdir: Path, upstream_port: int) -> None:
        """Writes the certificates, password file and ACL that the configuration names, then the configuration."""
        self.tls_port, self.upstream_port = free_port(), upstream_port
        (workdir / "certs").mkdir()
        make_certificates(workdir / "certs")
        passwd = workdir / "passwd"
        for i, (user, password) in enumerate([("gateway", "gw-secret"), ("app", "app-secret"),
                                              (WEARABLE, "aa-secret"), (OTHER, "bb-secret")]):
            subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [str(passwd), user, password],
                           check=True, capture_output=True, timeout=30)
        shutil.copy(DEPLOY / "mosquitto.acl", workdir / "acl")
        super().__init__(workdir)

    def configuration(self, extra_config: str) -> str:
        workdir, certs, passwd = self.workdir, self.workdir / "certs", self.workdir / "passwd"
        conf = render((DEPLOY / "mosquitto.conf").read_text(), [
            ("/etc/mosquitto/imu-anon.passwd", str(passwd)),
            ("/etc/mosquitto/imu-anon.acl", str(workdir / "acl")),
            ("/var/lib/mosquitto/", f"{workdir}/"),
            ("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1"),
            ("listener 8883\n", f"listener {self.tls_port} 127.0.0.1\n"),
            ("/etc/mosquitto/certs/", f"{certs}/"),
            ("address cloud.example.org:8883", f"address 127.0.0.1:{self.upstream_port}"),
            (f"bridge_cafile {certs}/upstream-ca.crt\n", ""),  # the test's upstream listens in plain text
        ])
        return conf + f"user {getpass.getuser()}\nlog_dest file {workdir / 'mosquitto.log'}\n"

    @property
    def ready_port(self) -> int:
        return self.tls_port  # the listener the clients of these tests use


def tls_client(user: str, password: str, ca: Path) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca))
    return client


@pytest.fixture
def brokers(tmp_path: Path):
    for name in ("up", "gw"):
        (tmp_path / name).mkdir()
    upstream = Broker(tmp_path / "up")
    upstream.start()
    gateway = GatewayBroker(tmp_path / "gw", upstream.port)
    gateway.start()
    try:
        yield gateway, upstream
    finally:
        gateway.stop()
        upstream.stop()


def test_the_template_enforces_tls_credentials_acl_and_an_anonymised_only_bridge(tmp_path: Path, brokers,
                                                                                  spawn) -> None:
    gateway, upstream = brokers
    ca = tmp_path / "gw" / "certs" / "ca.crt"
    (tmp_path / "gw.password").write_text("gw-secret\n")
    tls = f"mqtts://127.0.0.1:{gateway.tls_port}"
    with Recorder(upstream.port, "#") as cloud, \
            Recorder(gateway.tls_port, "imu/#", username="app", password="app-secret", ca_file=str(ca)) as app:
        runtime = spawn(*run_args(build_model(tmp_path / "anon.onnx"), tmp_path, sources=[f"{tls}/imu/+/raw"],
                                  sinks=[f"{tls}/imu/anon/{{stream}}"],
                                  extra=("--mqtt-username", "gateway", "--mqtt-password-file",
                                         str(tmp_path / "gw.password"), "--mqtt-ca-file", str(ca),
                                         "--publish-gateway", "ward-3")))
        runtime.wait_for_line("mqtt-in: subscribed to imu/+/raw")
        runtime.wait_for_line("mqtt-out: connected")
        wearable = tls_client(WEARABLE, "aa-secret", ca)
        wearable.connect("127.0.0.1", gateway.tls_port)
        wearable.loop_start()
        try:
            for frame in frames_for(signal(640, seed=1), int(WEARABLE, 16)):
                wearable.publish(f"imu/{WEARABLE}/raw", frame, qos=1).wait_for_publish(5)
            # Not its own topic, and not the gateway's: the ACL drops both silently.
            for frame in frames_for(signal(640, seed=2), int(OTHER, 16)):
                wearable.publish(f"imu/{OTHER}/raw", frame, qos=1).wait_for_publish(5)
            wearable.publish("imu/anon/s-forged", b'{"values": [[1]]}', qos=1).wait_for_publish(5)
            expected = (640 - W) // HOP + 1
            got = app.wait_for(expected, timeout=20)
            time.sleep(1.0)  # anything the ACL should have stopped would have arrived by now
        finally:
            wearable.disconnect()
            wearable.loop_stop()
        assert runtime.terminate() == 0
        cloud.wait_for(expected, timeout=10, prefix="sites/ward-3/imu/anon/")
        cloud_topics = {t for t, _, _ in cloud.messages}
        app_topics = {t for t, _, _ in app.messages}
    assert len(got) == expected and len({m["stream"] for m in got}) == 1
    assert "imu/anon/s-forged" not in app_topics and not any(t.endswith("/raw") for t in app_topics)
    assert {t.split("/")[3] for t in cloud_topics if t.startswith("sites/ward-3/imu/")} == {"anon", "gateway"}
    forwarded = ("sites/ward-3/imu/anon/", "sites/ward-3/imu/gateway/")
    assert all(t.startswith(forwarded) for t in cloud_topics), cloud_topics


def test_a_wrong_gateway_password_is_refused_and_retried(tmp_path: Path, brokers, spawn) -> None:
    gateway, _ = brokers
    ca = tmp_path / "gw" / "certs" / "ca.crt"
    (tmp_path / "wrong").write_text("not-it\n")
    runtime = spawn(*run_args(build_model(tmp_path / "anon.onnx"), tmp_path, sources=["loop:idle"],
                              sinks=[f"mqtts://127.0.0.1:{gateway.tls_port}/imu/anon/{{stream}}"],
                              extra=("--mqtt-username", "gateway", "--mqtt-password-file", str(tmp_path / "wrong"),
                                     "--mqtt-ca-file", str(ca))))
    line = runtime.wait_for_line("refused the connection")
    assert "Not authorized" in line or "Bad user name or password" in line
    assert "not-it" not in runtime.log()
