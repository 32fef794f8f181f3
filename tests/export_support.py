"""A tiny REAL trained run and its exported files, built once per test process.

The run is the trainer's quick preset cut down to a few hundred windows and one round of
the lean architecture (about ten seconds on two cores): real HAPT data, real training, real
checkpoint. It is exported once through the real command line (``imu-anon export --int8``),
so the numbers export tests assert come from a model the trainer actually produced and a
file the command actually wrote. Test modules reach both through their own session fixtures
over ``tmp_path_factory``; the cache here makes it one training and one export per process.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = {"arch": "lean", "max_windows": 600, "reg_epochs": 1, "rounds": 1, "hop": 20,
        "pretrain_epochs": 1, "aae_epochs": 1, "seed": 0}


@dataclass(frozen=True)
class Exported:
    fp32: Path
    int8: Path
    summary: Path  # the command's --json
    stdout: str


_CACHE: dict[str, object] = {}


def tiny_run_dir(factory: pytest.TempPathFactory) -> Path:
    """The run directory of the tiny trained run (trained on first use)."""
    if "run" not in _CACHE:
        from trainer.config import QUICK, TrainConfig
        from trainer.training import train

        out = factory.mktemp("tiny-run")
        train(TrainConfig.from_dict(TINY, base=QUICK), out, progress=False, threads=2)
        _CACHE["run"] = out
    return _CACHE["run"]  # type: ignore[return-value]


def tiny_export(factory: pytest.TempPathFactory) -> Exported:
    """``tiny.onnx`` and ``tiny.int8.onnx`` (with sidecars) written by ``imu-anon export --int8
    --no-evaluate --no-timing`` from the tiny run (timing has its own, shorter test)."""
    if "export" not in _CACHE:
        run_dir = tiny_run_dir(factory)
        models = factory.mktemp("models")
        out, summary = models / "tiny.onnx", models / "summary.json"
        proc = subprocess.run(
            [sys.executable, "-m", "imu_anon", "export", str(run_dir), "--out", str(out), "--int8",
             "--no-evaluate", "--parity-windows", "1000", "--no-timing", "--json", str(summary)],
            capture_output=True, text=True, timeout=240, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _CACHE["export"] = Exported(fp32=out, int8=models / "tiny.int8.onnx", summary=summary, stdout=proc.stdout)
    return _CACHE["export"]  # type: ignore[return-value]
