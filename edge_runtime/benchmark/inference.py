"""Latency and throughput of an exported model inside the runtime, and where its time goes.

Models are opened with ``Anonymiser.open`` and timed through ``Anonymiser.anonymise``: the
same checks, session settings and call the gateway uses, so "inside the runtime" is literal.
The per-operator split comes from onnxruntime's own profiler on a second session with the
same settings, so the timed session is not slowed by profiling.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.anonymiser import Anonymiser, InferenceSettings
from edge_runtime.benchmark.device import single_thread_env
from edge_runtime.benchmark.timing import TimingPlan, measure, with_flops
from edge_runtime.benchmark.workload import raw_windows
from edge_runtime.card import INPUT_NAME
from edge_runtime.errors import EdgeRuntimeError

PROFILE_CALLS = 50


def bench_settings(threads: int) -> InferenceSettings:
    """The runtime's defaults (full graph optimisation, no spinning), with ``threads`` intra-op threads."""
    return InferenceSettings(intra_op_threads=threads, inter_op_threads=1, spinning=False, graph_optimisation="all")


def measure_variant(path: str | Path, *, plan: TimingPlan, peak_gflops: float | None,
                    settings: InferenceSettings, profile: bool = True) -> dict:
    """One model file: latency at batch 1, windows/s per batch, GFLOP/s, fraction of peak, op split."""
    model = Anonymiser.open(path, settings=settings)
    card = model.card
    inputs = {b: raw_windows(card, b) for b in sorted(set(plan.batches) | {1})}
    result = measure(model.anonymise, lambda batch: inputs[batch], plan)
    out = with_flops(result, card.flops_per_window, peak_gflops)
    out.update(model=str(path), arch=card.arch, precision=card.precision, sha256=model.sha256[:12])
    if profile:
        out["op_share"] = op_shares(path, settings, inputs[1], calls=10 if plan.latency_s < 1 else PROFILE_CALLS)
    return out


def op_shares(path: str | Path, settings: InferenceSettings, x: np.ndarray, *, calls: int) -> dict[str, float]:
    """Share of node time per operator type at batch 1, from onnxruntime's profiler (largest first)."""
    opts = settings.session_options()
    with tempfile.TemporaryDirectory(prefix="imu-anon-profile-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=list(settings.providers))
        for _ in range(max(1, calls)):
            session.run(None, {INPUT_NAME: x})
        trace = session.end_profiling()
        events = json.loads(Path(trace).read_text(encoding="utf-8"))
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time") and "op_name" in args:
            per_op[args["op_name"]] += float(event.get("dur", 0))
    total = sum(per_op.values())
    if total <= 0:
        return {}
    shares = sorted(((op, t / total) for op, t in per_op.items()), key=lambda kv: -kv[1])
    return {op: round(share, 4) for op, share in shares}


def variant_paths(model: str | Path, precision: str, int8: str | Path | None = None) -> dict[str, Path]:
    """``fp32``/``int8`` -> file: the given model under its card's ``precision``, plus ``int8``
    or, when none is given, the int8 sibling ``NAME.int8.onnx`` lying beside an fp32 model."""
    model = Path(model)
    found = {precision: model}
    if int8 is not None:
        found["int8"] = Path(int8)
    elif precision == "fp32":
        sibling = model.with_name(model.stem + ".int8.onnx")
        if sibling.is_file():
            found["int8"] = sibling
    return found


TORCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "torch_eager.py"


def torch_unavailable() -> str | None:
    """Why the torch eager reference cannot run here, or None when it can."""
    missing = [name for name in ("torch", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (the gateway install has neither; pip install 'imu-anon[train]')"
    if not TORCH_SCRIPT.is_file():
        return f"{TORCH_SCRIPT} not found (the reference script ships with the source checkout)"
    return None


def measure_torch(path: str | Path, *, cpu: int | None, quick: bool, peak_gflops: float | None,
                  flops_per_window: int, timeout_s: float = 300.0) -> dict:
    """The torch eager reference, in its own single-threaded subprocess so torch never enters
    the runtime's process. Raises EdgeRuntimeError with the reason when it cannot run."""
    cmd = [sys.executable, str(TORCH_SCRIPT), str(path)] + (["--cpu", str(cpu)] if cpu is not None else [])
    cmd += ["--quick"] if quick else []
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=single_thread_env())
    except subprocess.TimeoutExpired:
        raise EdgeRuntimeError(f"the torch reference took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise EdgeRuntimeError(f"the torch reference failed: {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "skipped" in result:
        raise EdgeRuntimeError(result["skipped"])
    out = with_flops(result, flops_per_window, peak_gflops)
    out.update(model=str(path), precision="fp32", runner="torch eager (the exported graph, op by op)")
    return out
