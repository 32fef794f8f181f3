"""A subscriber on '#' for a whole run: no raw sample and no real device id is ever published."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from model_factory import build_model, reference_output
from runtime_helpers import Recorder, spawn, as_decoded, device_name, frames_for, run_args, signal

from edge_runtime import payload
from edge_runtime.windowing import sliding_windows
from firmware_bridge.ports import MqttOutput
from firmware_bridge.recordings import load_csv
from firmware_bridge.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.integration
W, HOP = 128, 64
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hapt-user09.csv"
MQTT_DEV, SERIAL_DEV, JSON_DEV = 0x494D55414E4F4E09, 0x00C0FFEE00C0FFEE, "jsonwearable01"


def raw_triplets(samples: np.ndarray) -> set[tuple[float, float, float]]:
    """Every run of three consecutive values of every raw channel, as a JSON payload would print them."""
    out = set()
    for channel in np.round(samples.astype(np.float64), 6).T:
        out |= set(zip(channel[:-2], channel[1:-1], channel[2:]))
    return out


def test_nothing_but_status_and_anonymised_windows_leaves_the_runtime(tmp_path: Path, broker, pty_pair, spawn) -> None:
    model = build_model(tmp_path / "anon.onnx")
    master, path = pty_pair
    serial_samples = signal(640, seed=11)
    json_samples = signal(640, seed=12)
    recording = load_csv(SAMPLE)
    with Recorder(broker.port, "#") as everything:
        runtime = spawn(*run_args(model, tmp_path, sources=[f"{broker.url}/imu/+/raw", f"serial://{path}"],
                                    sinks=[f"{broker.url}/imu/anon/{{stream}}",
                                           f"{broker.url}/imu/anonbin/{{stream}}?format=binary"
                                           "&status=imu/gateway/{gateway}/binstatus"]))
        runtime.wait_for_line("mqtt-in: subscribed to imu/+/raw")
        runtime.wait_for_line(f"opened {path}")
        # Wearable 1: the device simulator over MQTT (binary frames on imu/<id>/raw).
        with MqttOutput(broker.url, MQTT_DEV, qos=1) as out:
            sim = threading.Thread(target=Simulator(recording, SimulatorConfig(device_id=MQTT_DEV, speed=25.0,
                                                                                duration_s=20.0), out.send).run)
            sim.start()
            # Wearable 2: frames on the serial line.
            data = b"".join(frames_for(serial_samples, SERIAL_DEV))
            for start in range(0, len(data), 512):
                os.write(master, data[start:start + 512])
                time.sleep(0.002)
            # Wearable 3: JSON samples over MQTT.
            for k in range(10):
                body = {"seq": k, "t0": k * 64 / 50, "rate_hz": 50,
                        "samples": json_samples[k * 64:(k + 1) * 64].tolist()}
                everything.client.publish(f"imu/{JSON_DEV}/raw", json.dumps(body), qos=1).wait_for_publish(5)
            sim.join(timeout=30)
        expected = (1000 - W) // HOP + 1 + 2 * ((640 - W) // HOP + 1)
        everything.wait_for(expected, timeout=30)
        everything.wait_for(expected, timeout=10, prefix="imu/anonbin/")
        assert runtime.terminate() == 0
        time.sleep(0.3)
        messages = list(everything.messages)

    raw_topics = {f"imu/{device_name(MQTT_DEV)}/raw", f"imu/{JSON_DEV}/raw"}
    published = [(t, p) for t, p, _ in messages if t not in raw_topics]
    secrets = [device_name(MQTT_DEV), device_name(SERIAL_DEV), JSON_DEV, str(MQTT_DEV), str(SERIAL_DEV),
               f"{MQTT_DEV:x}", f"{SERIAL_DEV:x}"]
    raw = np.concatenate([as_decoded(serial_samples), json_samples, recording.samples[:1000]])
    triplets = raw_triplets(raw)
    raw_rows = {row.tobytes() for row in raw.astype("<f4")} | {row[:3].tobytes() for row in raw.astype("<f4")}
    kinds = {"status": 0, "json": 0, "binary": 0}
    for topic, body in published:
        for secret in secrets:
            assert secret.lower() not in topic.lower() and secret.lower().encode() not in body.lower()
        for row in raw_rows:
            assert row not in body
        if topic.startswith("imu/gateway/gateway/"):
            assert json.loads(body)["state"] in ("online", "offline")
            kinds["status"] += 1
            continue
        window = payload.decode(body)
        assert re.fullmatch(r"s-[0-9a-f]{16}", window["stream"]) and topic.endswith("/" + window["stream"])
        assert np.asarray(window["values"]).shape == (2, W)
        kinds["binary" if topic.startswith("imu/anonbin/") else "json"] += 1
        if topic.startswith("imu/anon/"):
            for channel in window["values"]:
                assert not set(zip(channel[:-2], channel[1:-1], channel[2:])) & triplets
    assert kinds == {"status": 4, "json": expected, "binary": expected}  # online + offline from each sink
    # And what was published is the model's output, not something else: check the serial wearer's.
    serial_windows = reference_output(np.ascontiguousarray(sliding_windows(as_decoded(serial_samples), W, HOP)))
    json_windows = [payload.decode(b) for t, b in published if t.startswith("imu/anon/")]
    matched = [w for w in json_windows if np.allclose(w["values"], serial_windows[w["index"] % len(serial_windows)],
                                                       atol=2e-5)]
    assert len(matched) == len(serial_windows)
