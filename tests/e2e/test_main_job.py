"""The README's main job, end to end: ``scripts/demo.sh`` trains a quick anonymiser on the
bundled HAPT data, exports it, streams a simulated wearable over a real pty through the
runtime into a loopback Mosquitto, and summarises. What a user sees must hold: windows
arrive, each through the exported model, under pseudonyms, and nothing raw is on the broker.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.anonymiser import Anonymiser

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.timeout(900)
def test_the_main_job_streams_only_anonymised_windows_to_the_broker(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = dict(os.environ, DEMO_DIR=str(demo))
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    windows = [json.loads(line) for line in (demo / "anonymised.jsonl").read_text().splitlines()]
    seen = [json.loads(line) for line in (demo / "broker-capture.jsonl").read_text().splitlines()]
    # 60 s of the wearable at 10x speed is minutes of walking and stairs: hundreds of windows
    assert len(windows) >= 100
    assert f"anonymised windows written to {demo}/anonymised.jsonl: {len(windows)}" in proc.stdout

    # every window on the file sink also crossed the broker, on its pseudonym's topic only
    window_msgs = [m for m in seen if "/status" not in m["topic"]]
    assert len(window_msgs) == len(windows)
    streams = {w["stream"] for w in windows}
    assert len(streams) == 1 and all(s.startswith("s-") for s in streams)
    assert {m["topic"] for m in window_msgs} == {f"imu/anon/{s}" for s in streams}
    assert not [m for m in seen if m["topic"].endswith("/raw")]
    assert "raw messages on the broker: 0" in proc.stdout

    # the windows are the exported model's output: physical magnitudes of the right shape, and
    # not the wearable's signal passed through
    model = Anonymiser.open(demo / "model.onnx")
    card = model.card
    values = np.asarray(windows[len(windows) // 2]["values"], dtype=np.float64)
    assert values.shape == (len(card.output_channels), card.window)
    assert np.isfinite(values).all()
    log = (demo / "runtime.log").read_text()
    assert "Traceback" not in log and "Traceback" not in (demo / "simulator.log").read_text()
