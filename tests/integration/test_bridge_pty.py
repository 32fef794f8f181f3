"""End to end over a real pseudo-terminal: simulator -> pty -> pyserial -> FrameDecoder."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import serial

from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.ports import FdOutput
from firmware_bridge.recordings import load_hapt_user
from firmware_bridge.simulator import FaultRule, Faults, Simulator, SimulatorConfig, hapt_device_id

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Reader(threading.Thread):
    """Reads a serial port the way the gateway does and decodes everything it gets."""

    def __init__(self, path: str, limit_s: float = 60.0) -> None:
        super().__init__(name="pty-reader", daemon=True)
        self.port = serial.Serial(path, 115200, timeout=0.05)  # opened before anyone writes
        self.decoder = FrameDecoder()
        self.blocks = []
        self.done = threading.Event()  # set by the writer side when nothing more will come
        self.limit_s = limit_s

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        quiet_since = None
        while time.monotonic() < deadline:
            try:
                chunk = self.port.read(4096)
            except serial.SerialException:
                break  # the writer closed the pty
            if chunk:
                self.blocks += self.decoder.feed(chunk)
                quiet_since = None
            elif self.done.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.3:
                    break
        self.port.close()


def test_faults_injected_on_a_pty_lose_exactly_the_samples_reported(pty_pair) -> None:
    master, path = pty_pair
    os.set_blocking(master, False)
    reader = Reader(path)
    reader.start()
    rec = load_hapt_user(9)
    faults = Faults(drop=FaultRule(probability=0.03), corrupt=FaultRule(probability=0.03), duplicate=FaultRule(probability=0.03),
                    reorder=FaultRule(probability=0.03), reboot=FaultRule(every=150), seed=4)
    config = SimulatorConfig(device_id=hapt_device_id(9), speed=0.0, duration_s=120.0, faults=faults)
    summary = Simulator(rec, config, FdOutput(master).send).run()
    reader.done.set()
    reader.join(timeout=60)
    assert not reader.is_alive()

    counters = reader.decoder.counters
    got = sum(len(b) for b in reader.blocks)
    assert summary.samples_sent == 6000 and summary.tx_dropped == 0
    assert min(summary.dropped, summary.corrupted, summary.duplicated, summary.reordered) > 0
    assert got == summary.samples_sent - summary.samples_lost == counters["samples_ok"]
    assert counters["duplicates"] == summary.duplicated and counters["late"] == summary.reordered
    assert counters["reboots"] == summary.reboots == 4  # after frames 150, 300, 450 and 600
    # What arrived before the first reboot is the recording itself, each block in its place.
    for b in (b for b in reader.blocks if b.epoch == 0):
        start = round(b.t0 * 50)
        assert start == 10 * b.seq
        np.testing.assert_allclose(b.samples, rec.samples[start:start + len(b)], atol=np.deg2rad(0.035))


def _summary(line: str) -> dict[str, int]:
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def test_cli_prints_the_pty_path_streams_hapt_and_exits_on_sigterm_with_a_summary() -> None:
    cmd = [sys.executable, "-m", "imu_anon", "device", "simulate", "--data", "hapt", "--user", "9",
           "--port", "pty", "--speed", "10", "--loop", "--linger", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        path = proc.stdout.readline().strip()
        assert re.fullmatch(r"/dev/pts/\d+", path), path
        port = serial.Serial(path, 115200, timeout=0.1)
        decoder, blocks = FrameDecoder(), []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(len(b) for b in blocks) < 1000:
            blocks += decoder.feed(port.read(4096))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        port.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("summary: hapt-user09-s16 device=494d55414e4f4e09")
    numbers = _summary(line)
    assert numbers["samples_sent"] >= 1000 and numbers["samples_lost"] == 0
    assert sum(len(b) for b in blocks) >= 1000
    assert {b.device_id for b in blocks} == {"494d55414e4f4e09"}
    assert decoder.counters["frames_corrupt"] == 0 and decoder.counters["seq_gaps"] == 0


def test_cli_writes_to_an_existing_serial_device_path(pty_pair) -> None:
    master, path = pty_pair
    received = bytearray()
    stop = threading.Event()

    def drain() -> None:  # the far end of the "cable": read the master side until told to stop
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    received.extend(os.read(master, 65536))
                except OSError:
                    break
            elif stop.is_set():
                break

    reader = threading.Thread(target=drain, name="pty-master-reader", daemon=True)
    reader.start()
    out = subprocess.run([sys.executable, "-m", "imu_anon", "device", "simulate", "--user", "2", "--port", path,
                          "--speed", "max", "--duration", "10", "--chip", "bmi270", "--drop", "1/4"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    stop.set()
    reader.join(timeout=30)
    assert out.returncode == 0, out.stderr
    numbers = _summary(out.stdout.strip().splitlines()[-1])
    assert numbers["bytes"] == len(received)
    dec = FrameDecoder()
    blocks = dec.feed(bytes(received))
    assert sum(len(b) for b in blocks) == numbers["samples_sent"] - numbers["samples_lost"] == 500 - 12 * 10
    assert {b.device_id for b in blocks} == {"494d55414e4f4e02"}
