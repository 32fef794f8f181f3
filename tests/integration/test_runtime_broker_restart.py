"""The broker goes away mid-stream: the runtime buffers QoS 1 windows (bounded), reconnects, delivers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Broker
from model_factory import build_model
from runtime_helpers import Recorder, spawn, final_counters, run_args

from firmware_bridge.recordings import load_csv, save_csv

pytestmark = pytest.mark.integration
W, HOP = 128, 64
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hapt-user09.csv"


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_windows_produced_during_an_outage_arrive_after_it_up_to_the_buffer_bound(tmp_path: Path, spawn,
                                                                                  client: str) -> None:
    # A broker that saves sessions, so the test's subscriber keeps its subscription over the restart
    # and sees everything the runtime delivers, whoever reconnects first.
    broker = Broker(tmp_path, extra_config=f"persistence true\npersistence_location {tmp_path}/\n")
    broker.start()
    model = build_model(tmp_path / "anon.onnx")
    rec = load_csv(SAMPLE)
    short = type(rec)(name="user09-40s", t=rec.t[:2000], samples=rec.samples[:2000], rate_hz=rec.rate_hz)
    csv = save_csv(short, tmp_path / "user09-40s.csv")
    total = (2000 - W) // HOP + 1  # 30 windows, one every 1.28 s of signal
    try:
        with Recorder(broker.port, "imu/anon/#", persistent=True) as recorder:
            # 8x real time: a window every 0.16 s, the recording lasts 5 s.
            runtime = spawn(*run_args(model, tmp_path, sources=[f"file:{csv}?speed=8"],
                                        sinks=[f"{broker.url}/imu/anon/{{stream}}?buffer=5&client={client}"],
                                        extra=("--mqtt-reconnect-min-s", "0.2", "--mqtt-reconnect-max-s", "0.5")))
            runtime.wait_for_line("mqtt-out: connected")
            recorder.wait_for(4, timeout=20)
            broker.stop()
            runtime.wait_for_line("mqtt-out: lost")
            time.sleep(2.0)  # about 12 windows are made meanwhile; 5 fit the buffer
            broker.start()
            assert runtime.proc.wait(timeout=60) == 0  # the recording ends; the runtime flushes and exits
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and total - 1 not in {m["index"] for m in recorder.windows()}:
                time.sleep(0.05)
            time.sleep(0.3)  # late duplicates, if any
            got = recorder.windows()
    finally:
        broker.stop()
    counters = final_counters(runtime.log())
    dropped = counters["publish_dropped"]
    indices = sorted({m["index"] for m in got})  # QoS 1 is at-least-once: count each window once
    missing = sorted(set(range(total)) - set(indices))
    assert dropped > 0, "the outage was too short to overflow the buffer"
    assert len(indices) + dropped == total == counters["windows_anonymised"]
    assert missing == list(range(missing[0], missing[0] + dropped)), "the oldest waiting windows are the ones dropped"
    assert indices[-1] == total - 1 and "mqtt-out: connected" in runtime.log().split("mqtt-out: lost")[1]
    assert counters["mqtt_out_reconnects"] == 1  # in the runtime's summary line, as serial_reconnects is
