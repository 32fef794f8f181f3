"""What the runtime costs a gateway before and while it works: cold start, peak RSS, imports.

The runtime is measured as a user starts it: ``imu-anon replay`` of a short recording in a
fresh interpreter, publishing to standard output. Cold start is the wall time from spawning
the process to reading its first anonymised window on the pipe (interpreter start, imports,
model checks and load, the first window's samples at full speed and its inference), with the
bytecode caches an installed gateway has (pip compiles on install; the bench runs
``compileall`` over the runtime's packages first). ``cold_start_uncached_s`` is the same
without any bytecode cache (every module, the standard library's included, compiled from
source: a worst case, e.g. a read-only image built without them). Peak RSS
is the kernel's high-water mark for that very process (``wait4``), so it is not mixed up with
the bench's own memory. A second run with ``python -X importtime`` lists every module the
runtime imported: the proof that torch, scipy, matplotlib and onnx stay out.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_runtime.benchmark.launch import MARK
from edge_runtime.benchmark.workload import stream_samples
from edge_runtime.errors import EdgeRuntimeError
from firmware_bridge.recordings import Recording, save_csv

HEAVY = ("torch", "scipy", "matplotlib", "onnx", "onnxscript", "tqdm", "sklearn", "pandas")
RECORDING_S = 30.0
TIMEOUT_S = 180.0


class FootprintError(EdgeRuntimeError):
    """The runtime could not be started for the footprint measurement."""


def _recording(folder: Path, rate_hz: float) -> Path:
    n = int(RECORDING_S * rate_hz)
    rec = Recording(name="bench", t=np.arange(n, dtype=np.float64) / rate_hz, samples=stream_samples(n), rate_hz=rate_hz)
    return save_csv(rec, folder / "bench-recording.csv")


def _command(model: Path, recording: Path, secret: Path, sink: str, threads: int, extra: list[str]) -> list[str]:
    return [sys.executable, *extra, "-m", "edge_runtime.benchmark.launch", "replay", str(recording), "--model", str(model),
            "--sink", sink, "--speed", "max", "--privacy-secret-file", str(secret), "--metrics-interval-s", "0",
            "--inference-intra-op-threads", str(threads)]


def _fail(what: str, proc: subprocess.Popen, stderr: str) -> FootprintError:
    tail = stderr.strip().splitlines()[-1:] or ["no output"]
    return FootprintError(f"the runtime failed to {what} (exit {proc.returncode}): {tail[0]}; "
                          f"try 'imu-anon replay' by hand with the same model")


RUNTIME_PACKAGES = ("edge_runtime", "firmware_bridge", "imu_anon")


def compile_runtime() -> None:
    """Bytecode for the runtime's packages in their own ``__pycache__``, as an install leaves it
    (quietly nothing where the folders are read-only: an install compiled them already)."""
    import importlib.util

    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=2)


def cold_start(model: Path, recording: Path, secret: Path, threads: int, pycache: Path | None = None) -> dict:
    """Spawn the runtime; seconds to its first window on stdout and the process's peak RSS.
    ``pycache``: an empty folder for ``PYTHONPYCACHEPREFIX``, so no bytecode cache is found."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # a window must reach the pipe when it is written
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    started = time.perf_counter()
    proc = subprocess.Popen(_command(model, recording, secret, "stdout:", threads, []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        first = proc.stdout.readline()
        first_at = time.perf_counter() - started
        rest = proc.stdout.read()  # to the end, so the process never blocks on a full pipe
        stderr = proc.stderr.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait(timeout=10)
    if proc.returncode != 0 or not first.startswith(b"{"):
        raise _fail("anonymise a recording", proc, stderr)
    own = [ln for ln in stderr.splitlines() if ln.startswith(MARK)]
    if own:
        rss_kb, source = int(own[-1][len(MARK):]), "VmHWM of the runtime process"
    else:
        rss_kb, source = usage.ru_maxrss, "ru_maxrss (may include the bench's own memory)"
    return {
        "cold_start_s": round(first_at, 4),
        "rss_mb": round(rss_kb / 1024.0, 1),  # kilobytes on Linux
        "rss_source": source,
        "windows_out": 1 + rest.count(b"\n"),
        "total_s": round(time.perf_counter() - started, 3),
    }


def import_graph(model: Path, recording: Path, secret: Path, threads: int) -> dict:
    """Every module the runtime imports (``-X importtime``), the heavy ones, the slowest ones."""
    done = subprocess.run(_command(model, recording, secret, "null:", threads, ["-X", "importtime"]),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        tail = [ln for ln in done.stderr.splitlines() if not ln.startswith("import time:")][-1:] or ["no output"]
        raise FootprintError(f"the runtime failed under -X importtime (exit {done.returncode}): {tail[0]}")
    modules: list[str] = []
    self_us: dict[str, int] = {}  # own import time per top-level package
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2 or "cumulative" in line:
            continue
        own, _, name = line[len("import time:"):].split("|")
        name = name.strip()
        modules.append(name)
        root = name.split(".")[0]
        self_us[root] = self_us.get(root, 0) + int(own.strip())
    roots = sorted({m.split(".")[0] for m in modules})
    heavy = sorted(r for r in roots if r in HEAVY)
    slowest = sorted(self_us.items(), key=lambda kv: -kv[1])[:6]
    return {
        "modules_loaded": len(modules),
        "packages": [r for r in roots if r not in sys.stdlib_module_names and not r.startswith("_")],
        "heavy_modules": heavy,
        "torch_loaded": "torch" in heavy,
        "import_ms_by_package": {name: round(us / 1000.0, 1) for name, us in slowest},
    }


def measure_footprint(model: str | Path, *, rate_hz: float, threads: int = 1) -> dict:
    model = Path(model).resolve()
    with tempfile.TemporaryDirectory(prefix="imu-anon-bench-") as tmp:
        folder = Path(tmp)
        recording = _recording(folder, rate_hz)
        secret = folder / "pseudonym.key"
        compile_runtime()
        cold_start(model, recording, secret, threads)  # once to warm the page cache, as a Pi after boot would be
        cold = cold_start(model, recording, secret, threads)
        uncached = cold_start(model, recording, secret, threads, pycache=folder / "empty-pycache")
        graph = import_graph(model, recording, secret, threads)
    return {**cold, "cold_start_uncached_s": uncached["cold_start_s"], **graph, "recording_s": RECORDING_S,
            "command": "imu-anon replay REC.csv --sink stdout: --speed max"}
