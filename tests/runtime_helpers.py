"""Helpers for the edge-runtime tests: wire frames for samples, a subscriber that records
everything on a broker, and a runtime subprocess whose log lines can be waited for."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime import payload
from firmware_bridge.decoder import device_name
from firmware_bridge.encoder import encode_hello, encode_samples_float32
from firmware_bridge.protocol import AXES, Hello
from firmware_bridge.scaling import to_float_payload

REPO = Path(__file__).resolve().parent.parent
PER_FRAME = 8  # float32 samples of six channels: at most 9 fit a frame


def wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls ``condition`` every 20 ms until it holds or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def hello(device_id: int, rate_hz: float = 50.0, boot_id: int = 1) -> bytes:
    return encode_hello(Hello(device_id=device_id, boot_id=boot_id, rate_mhz=round(rate_hz * 1000),
                              acc_scale=(1, 16384), gyro_scale=(1, 131), channels=AXES))


def frames_for(samples: np.ndarray, device_id: int, *, rate_hz: float = 50.0, boot_id: int = 1, seq0: int = 0,
               first_index: int = 0, hello_every: int = 25) -> list[bytes]:
    """Wire frames for ``samples`` [n, 6] (g, rad/s): a HELLO, then SAMPLES of PER_FRAME samples
    (float32), the HELLO repeated every ``hello_every`` frames as firmware does."""
    out = [hello(device_id, rate_hz, boot_id)]
    for k, start in enumerate(range(0, len(samples), PER_FRAME)):
        if k and k % hello_every == 0:
            out.append(hello(device_id, rate_hz, boot_id))
        chunk = samples[start:start + PER_FRAME]
        t_us = round((first_index + start) * 1e6 / rate_hz)
        out.append(encode_samples_float32(device_id=device_id, boot_id=boot_id, seq=(seq0 + k) & 0xFFFF, t_us=t_us,
                                          values=to_float_payload(chunk, AXES)))
    return out


def as_decoded(samples: np.ndarray) -> np.ndarray:
    """``samples`` as the gateway sees them after the float32 deg/s round trip of the wire."""
    payload = to_float_payload(samples, AXES).astype(np.float64)
    return np.concatenate([payload[:, :3], payload[:, 3:] * (np.pi / 180.0)], axis=1).astype(np.float32)


def signal(n: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """A deterministic, wearer-like signal [n, 6]: 1 g of gravity plus motion, distinct per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 50.0
    x = np.zeros((n, 6), dtype=np.float32)
    x[:, 2] = 1.0
    freq = 1.0 + 0.5 * seed
    x[:, :3] += 0.3 * np.sin(2 * np.pi * freq * t)[:, None] * rng.uniform(0.5, 1.5, 3)
    x[:, 3:] += 0.8 * np.cos(2 * np.pi * freq * t)[:, None] * rng.uniform(0.5, 1.5, 3)
    x += rng.normal(0, 0.02, x.shape).astype(np.float32) + offset
    return x


class Recorder:
    """A paho subscriber on a topic filter that keeps every (topic, payload, retain) it sees."""

    def __init__(self, port: int, topic: str = "#", *, host: str = "127.0.0.1", persistent: bool = False,
                 username: str | None = None, password: str | None = None, ca_file: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client_id = f"recorder-{os.getpid()}-{id(self)}"
        if persistent:
            # The broker keeps the subscription (and queues for it) across its own restart. MQTT
            # 3.1.1 because mosquitto 2.0.11 does not restore v5 sessions from its database.
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                      clean_session=False)
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def __enter__(self) -> "Recorder":
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the recorder could not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def windows(self, prefix: str = "imu/anon/") -> list[dict]:
        with self._lock:
            return [payload.decode(p) for t, p, _ in self.messages if t.startswith(prefix)]

    def wait_for(self, count: int, timeout: float, prefix: str = "imu/anon/") -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.windows(prefix)) < count:
            time.sleep(0.05)
        return self.windows(prefix)


class Runtime:
    """``imu-anon ARGS`` in a subprocess; stderr lines are collected so tests can wait for one."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "imu_anon", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout), daemon=True)
        self._out_reader.start()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a runtime behind when a test fails half-way (it would hold its serial port)."""
        if self.proc.poll() is None:
            self.terminate()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._new.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no log line with {text!r} within {timeout}s; got:\n{''.join(self.lines)[-4000:]}")

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self._out_reader.join(5)
        return rc

    def log(self) -> str:
        return "".join(self.lines)


__all__ = ["Recorder", "Runtime", "spawn", "as_decoded", "device_name", "frames_for", "hello", "signal", "PER_FRAME"]


def run_args(model: Path, tmp: Path, *, sources: list[str], sinks: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """Arguments of ``imu-anon run`` for a test: a private key file, no periodic stats."""
    args = ["run", "--model", str(model), "--privacy-secret-file", str(tmp / "pseudonym.key"),
            "--metrics-interval-s", "0", "--pipeline-max-wait-ms", "5"]
    for url in sources:
        args += ["--source", url]
    for url in sinks:
        args += ["--sink", url]
    return args + list(extra)


def final_counters(log: str) -> dict[str, int]:
    """The counters of the runtime's last line ("stopped after ... s: name=value ...")."""
    import re

    line = [ln for ln in log.splitlines() if "stopped after" in ln][-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?:\s|$)", line)}


def pseudonym_for(device: str, key_file: Path) -> str:
    from edge_runtime.pseudonym import Pseudonymiser, load_or_create_secret

    return Pseudonymiser(load_or_create_secret(key_file))(device)


@pytest.fixture
def spawn():
    """``spawn(*args) -> Runtime``; every runtime still running at the end of the test is stopped."""
    started: list[Runtime] = []

    def start(*args: str) -> Runtime:
        runtime = Runtime(*args)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        if runtime.proc.poll() is None:
            runtime.terminate()
