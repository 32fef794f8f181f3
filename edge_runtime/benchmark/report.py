"""The bench result: one JSON document and the table printed from it.

The JSON is the record (``bench/results/*.json``); the table is a view of it, so what a
user reads and what a script compares are the same numbers. Raspberry Pi figures are
estimates scaled from this run (FLOPs, the Pi core's NEON peak, the fraction of peak measured
here) and are labelled as such wherever they appear.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = "imu-anon-bench/1"
VARIANTS = ("fp32", "int8", "torch")
STAGES = ("decode", "window", "infer", "encode", "publish")
WINDOWS_PER_WEARABLE_S = 5.0  # 50 Hz with a hop of 10 samples

# Per-core theoretical fp32 peaks (GFLOP/s), low..high: FLOP/cycle x clock.
# Pi 4: Cortex-A72, 128-bit NEON FMA, 8 FLOP/cycle at 1.5 (early boards) to 1.8 GHz.
# Pi 5: Cortex-A76 at 2.4 GHz, 8 to 16 FLOP/cycle (one or both NEON pipes issuing FMA).
PI_CORES = {
    "raspberry_pi_4": {"core": "Cortex-A72 @ 1.5-1.8 GHz", "peak_gflops": (12.0, 14.4)},
    "raspberry_pi_5": {"core": "Cortex-A76 @ 2.4 GHz", "peak_gflops": (19.2, 38.4)},
}


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def pi_estimates(result: dict) -> dict:
    """Expected figures on a Raspberry Pi core. An estimate, not a measurement: inference at the
    fraction of peak measured here applied to the Pi core's NEON peak; wearables from the
    capacity measured here scaled by the ratio of peaks (the Python around the model is assumed
    to slow down like the arithmetic), never above the inference ceiling."""
    fp32 = result.get("fp32")
    if not fp32 or not fp32.get("fraction_of_peak"):
        return {}
    fraction, flops = fp32["fraction_of_peak"], fp32["flops_per_window"]
    peak_here = result.get("peak_gflops")
    capacity = (result.get("capacity") or {}).get("wearables_per_core")
    out: dict[str, Any] = {"note": "ESTIMATE, not measured: the Pi core's NEON peak x the fraction of peak measured "
                                   "here / FLOPs per window; wearables = capacity here x (Pi peak / peak here)"}
    for name, pi in PI_CORES.items():
        wps = [p * fraction * 1e9 / flops for p in pi["peak_gflops"]]
        wearables = [int(w / WINDOWS_PER_WEARABLE_S) for w in wps]
        if capacity and peak_here:
            wearables = [min(w, int(capacity * p / peak_here)) for w, p in zip(wearables, pi["peak_gflops"])]
        out[name] = {
            "core": pi["core"],
            "peak_gflops": list(pi["peak_gflops"]),
            "fraction_of_peak_assumed": fraction,
            "windows_per_s": [round(w, 1) for w in wps],
            "latency_ms_batch1": [round(1e3 / wps[1], 2), round(1e3 / wps[0], 2)],
            "wearables_per_core": wearables,
        }
    return out


def new_result(*, quick: bool, device: dict, peak: dict, card: Any, model_path: str, sha256: str) -> dict:
    return {
        "schema": SCHEMA,
        "created": utc_now(),
        "quick": quick,
        "device": device,
        "peak_gflops": peak["peak_gflops"],
        "peak": peak,
        "model": {
            "path": model_path, "arch": card.arch, "precision": card.precision, "window": card.window,
            "hop": card.hop, "sample_rate_hz": card.sample_rate_hz, "channel_mode": card.channel_mode,
            "flops_per_window": card.flops_per_window, "sha256": sha256[:12],
        },
        "skipped": {},
    }


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # .gitignore'd; renamed into place when complete
    tmp.write_text(json.dumps(_finite(result), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def format_table(result: dict) -> str:
    """The human-readable report."""
    m, d = result["model"], result["device"]
    flags = " ".join(k for k, v in d.get("cpu_flags", {}).items() if v and k not in ("sse4_2", "f16c"))
    lines = [
        f"imu-anon bench: {m['path']} ({m['arch']}, {m['flops_per_window'] / 1e6:.3g} MFLOP/window, "
        f"window {m['window']} hop {m['hop']} at {m['sample_rate_hz']:g} Hz){'  [quick]' if result['quick'] else ''}",
        f"device: {d['cpu_model']} ({flags or 'no SIMD flags read'}), core(s) {d.get('pinned_cpus') or d['pinned_cpu']} of "
        f"{d['allowed_cpus']}, load {d.get('load_average')}",
        f"runtime: onnxruntime {d['onnxruntime']} {d['execution_provider']}, {d['intra_op_threads']} intra-op "
        f"thread(s), spinning {'on' if d['spinning'] else 'off'}, graph optimisation {d['graph_optimisation']}",
        f"peak: {_fmt(result['peak_gflops'])} GFLOP/s single-thread fp32 matmul (numpy BLAS, n={result['peak']['best_size']})",
        "",
    ]
    present = [v for v in VARIANTS if v in result]
    if present:
        batches = list(result[present[0]]["throughput_wps"])
        head = ["variant", "p50 ms", "p95 ms", "p99 ms"] + [f"b{b} w/s" for b in batches] + ["GFLOP/s", "% peak"]
        rows = [head]
        for name in present:
            v = result[name]
            lat = v["latency_ms"]
            rows.append([name, _fmt(lat["p50"], 3), _fmt(lat["p95"], 3), _fmt(lat["p99"], 3)]
                        + [_fmt(v["throughput_wps"].get(b), 0) for b in batches]
                        + [_fmt(v.get("gflops")), _fmt(100 * v["fraction_of_peak"]) if v.get("fraction_of_peak") else "-"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        for name in present:
            ops = result[name].get("op_share") or {}
            if ops:
                top = ", ".join(f"{op} {100 * s:.0f}%" for op, s in list(ops.items())[:5])
                lines.append(f"  {name} time by operator (batch 1): {top}")
        lines.append("")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    cap = result.get("capacity")
    if cap:
        lines.append(
            f"capacity ({cap['sink']} sink, p99 budget {cap['budget_ms']:g} ms): {cap['wearables_per_core']} "
            f"wearables/core at 50 Hz hop {m['hop']}, p99 sample-to-publish {_fmt(cap['p99_latency_ms'])} ms, "
            f"drops {cap['drops']} (the model alone: {cap.get('inference_ceiling_wearables', '?')}; search ended by "
            f"{cap.get('limited_by', '?')})")
        shares = cap.get("stage_share") or {}
        if shares:
            lines.append("  time by stage: " + ", ".join(f"{s} {100 * shares[s]:.1f}%" for s in STAGES if s in shares)
                         + f"; pipeline overhead {100 * cap.get('overhead_share', 0):.1f}%")
        best = next((s for s in reversed(cap.get("steps", [])) if s["wearables"] == cap["wearables_per_core"]), None)
        if best:
            lines.append("  CPU per window (us): " + ", ".join(
                f"{k} {v:,.0f}" for k, v in best["stage_us_per_window"].items()))
        for step in cap.get("steps", []):
            verdict = "ok" if step["ok"] else f"fails ({step['why']})"
            again = ", run again" if step.get("retry") else ""
            lines.append(f"  {step['wearables']:>5} wearables{again}: {step['offered_windows_per_s']:,.0f} windows/s, "
                         f"p99 {_fmt(step['p99_latency_ms'])} ms, drops {step['drops']}, cpu {100 * step['cpu_share']:.0f}% -> {verdict}")
    if "rss_mb" in result:
        fp = result.get("footprint", {})
        heavy = ", ".join(fp.get("heavy_modules", [])) or "none"
        uncached = fp.get("cold_start_uncached_s")
        lines.append(f"footprint: cold start {_fmt(result['cold_start_s'], 3)} s (process start -> first window out"
                     + (f"; {_fmt(uncached, 3)} s without bytecode caches" if uncached is not None else "") + "), "
                     f"peak RSS {_fmt(result['rss_mb'])} MB, {fp.get('modules_loaded', '?')} modules, heavy imports: {heavy}")
    est = result.get("estimates") or {}
    if est:
        lines.append("")
        lines.append("Raspberry Pi ESTIMATE (not measured; this run's fraction of peak applied to the Pi core's NEON peak):")
        for name in PI_CORES:
            e = est.get(name)
            if e:
                lines.append(f"  {name.replace('_', ' ')} ({e['core']}, {e['peak_gflops'][0]:g}-{e['peak_gflops'][1]:g} "
                             f"GFLOP/s): ~{e['windows_per_s'][0]:,.0f}-{e['windows_per_s'][1]:,.0f} windows/s, "
                             f"~{e['wearables_per_core'][0]}-{e['wearables_per_core'][1]} wearables/core")
    return "\n".join(lines)
