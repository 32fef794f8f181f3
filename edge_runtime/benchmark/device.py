"""What the figures were measured on: CPU, SIMD flags, library versions, threads, pinning.

A benchmark figure without its machine is noise; this is the part of the report that lets a
reader compare a Raspberry Pi run with a workstation run, or spot a run on a throttled core.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from edge_runtime.errors import EdgeRuntimeError

# The flags that decide which fp32/int8 kernels onnxruntime and OpenBLAS can use.
X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FLAGS = ("neon", "asimd", "asimddp", "fphp", "i8mm", "sve")

# Environment that keeps every BLAS and OpenMP pool to one thread; it has to be set before
# numpy (or onnxruntime) is imported, so it is applied to subprocesses only.
SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


class PinningError(EdgeRuntimeError):
    """The core asked for with ``--cpu`` is not one this process may run on."""


def single_thread_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(SINGLE_THREAD_ENV)
    return env


def allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def choose_cpu(requested: int | None) -> int | None:
    """The core to pin measurements to: the requested one, else the last allowed one (core 0
    tends to take the interrupts); None where the OS has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        if requested is not None:
            raise PinningError("--cpu needs Linux (os.sched_setaffinity); leave it out on this system")
        return None
    cpus = allowed_cpus()
    if requested is None:
        return cpus[-1]
    if requested not in cpus:
        raise PinningError(f"--cpu {requested} is not available to this process; choose one of {cpus}")
    return requested


def pin_to(cpu: int | None, extra: int = 0) -> list[int] | None:
    """Pin the calling process (and the threads it starts) to ``cpu`` plus ``extra`` more
    allowed cores (for ``--threads`` above 1); returns the cores pinned to."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    others = [c for c in allowed_cpus() if c != cpu]
    if extra > len(others):
        raise PinningError(f"{extra + 1} threads need as many cores, but only {len(others) + 1} are available")
    cores = sorted(others[len(others) - extra:] + [cpu]) if extra else [cpu]
    os.sched_setaffinity(0, set(cores))
    return cores


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    first: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if first:
                break  # the first processor block is enough
            continue
        key, _, value = line.partition(":")
        first.setdefault(key.strip().lower(), value.strip())
    return first


def cpu_model() -> str:
    info = _cpuinfo()
    for key in ("model name", "hardware", "cpu model", "processor"):
        if info.get(key) and not info[key].isdigit():
            return info[key]
    if "cpu part" in info:  # Arm cores name themselves by part number only
        return ARM_PARTS.get(info["cpu part"].lower(), f"Arm part {info['cpu part']}")
    return platform.processor() or platform.machine() or "unknown"


ARM_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd05": "Cortex-A55"}


def cpu_flags() -> dict[str, bool]:
    info = _cpuinfo()
    if "flags" in info:
        flags, names = set(info["flags"].split()), X86_FLAGS
    else:
        flags, names = set(info.get("features", "").split()), ARM_FLAGS
    return {name: name in flags for name in names}


def cpu_mhz() -> float | None:
    value = _cpuinfo().get("cpu mhz")
    try:
        return round(float(value), 1) if value else None
    except ValueError:
        return None


def describe(*, cpu: int | None, threads: int, allowed: list[int] | None = None,
             providers: list[str] | None = None) -> dict:
    """The device section of the report; ``allowed``: the cores the bench could use before it
    pinned itself to ``cpu``."""
    import numpy as np
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    used = providers or ["CPUExecutionProvider"]
    return {
        "cpu_model": cpu_model(),
        "cpu_mhz": cpu_mhz(),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "allowed_cpus": allowed if allowed is not None else allowed_cpus(),
        "pinned_cpu": cpu,
        "load_average": _load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "available_providers": available,
        "execution_provider": used[0],
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "spinning": False,
        "graph_optimisation": "ORT_ENABLE_ALL",
        "executable": sys.executable,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
