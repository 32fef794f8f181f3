"""The bench results as Markdown tables, and the targets of issue #5 checked against them.

    .venv/bin/python bench/summarise.py bench/results/*.json                  # print
    .venv/bin/python bench/summarise.py --update-readme bench/results/*.json  # rewrite bench/README.md's table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- bench:table:start -->", "<!-- bench:table:end -->"


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _wps(variant: dict | None) -> str:
    if not variant:
        return "-"
    wps = variant["throughput_wps"]
    return f"{wps['1']:,.0f} / {max(wps.values()):,.0f}"


def _overhead_us(cap: dict) -> str:
    """`` (N µs)``: CPU per window of everything but the model call, at the capacity found."""
    best = next((s for s in cap.get("steps", []) if s.get("ok") and s["wearables"] == cap.get("wearables_per_core")),
                None)
    if not best:
        return ""
    per = best.get("stage_us_per_window") or {}
    return f" ({sum(v for k, v in per.items() if k != 'infer'):.0f} µs)" if per else ""


def measured_table(results: list[tuple[str, dict]]) -> list[str]:
    rows = [
        "| result | model | MFLOP/window | core peak GFLOP/s | fp32 p50 / p99 ms (batch 1) | fp32 windows/s (batch 1 / best) "
        "| fp32 % of peak | int8 windows/s | torch eager windows/s | wearables per core (p99 ms, drops) "
        "| pipeline overhead (µs/window besides the model) | peak RSS MB | cold start s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        m, fp32, cap = r["model"], r.get("fp32") or {}, r.get("capacity") or {}
        lat = fp32.get("latency_ms") or {}
        retried = f", {cap['retried_sizes']} failing size(s) re-run" if cap.get("retried_sizes") else ""
        capacity = (f"{cap['wearables_per_core']} ({_f(cap.get('p99_latency_ms'))}, {cap.get('drops')})"
                    f"{', read over MQTT' if cap.get('source') == 'mqtt' else ''}{retried}" if cap else "-")
        rows.append(
            f"| {name}{' (quick)' if r.get('quick') else ''} | {m['arch']} | {m['flops_per_window'] / 1e6:.1f} "
            f"| {_f(r['peak_gflops'])} | {_f(lat.get('p50'), 2)} / {_f(lat.get('p99'), 2)} | {_wps(fp32)} "
            f"| {_f(100 * fp32['fraction_of_peak'], 1, ' %') if fp32.get('fraction_of_peak') else '-'} "
            f"| {_wps(r.get('int8'))} | {_wps(r.get('torch'))} | {capacity} "
            f"| {_f(100 * cap['overhead_share'], 1, ' %') if cap.get('overhead_share') is not None else '-'}"
            f"{_overhead_us(cap)} "
            f"| {_f(r.get('rss_mb'))} | {_f(r.get('cold_start_s'), 2)} |")
    return rows


def estimate_table(results: list[tuple[str, dict]]) -> list[str]:
    rows = ["| result | Pi 4 windows/s | Pi 4 wearables per core | Pi 5 windows/s | Pi 5 wearables per core |",
            "|---|---:|---:|---:|---:|"]
    for name, r in results:
        est = r.get("estimates") or {}
        cells = []
        for pi in ("raspberry_pi_4", "raspberry_pi_5"):
            e = est.get(pi)
            if not e:
                cells += ["-", "-"]
                continue
            lo, hi = e["windows_per_s"]
            wlo, whi = e["wearables_per_core"]
            cells += [f"~{lo:,.0f}-{hi:,.0f}", f"~{wlo}-{whi}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


PAPER_ARCH = "paper"
LEAN_WEARABLES, PAPER_WEARABLES, LEAN_SPEEDUP = 500, 150, 3.0


def _best_wps(result: dict) -> float | None:
    wps = (result.get("fp32") or {}).get("throughput_wps") or {}
    return max(wps.values()) if wps else None


def targets(results: list[tuple[str, dict]]) -> list[str]:
    """Issue #5's targets, judged per result (only where the figure was measured): the paper
    architecture needs 150 wearables a core; a lean one (``lean``, ``lean-wide``) 500 and 3x the
    paper's fp32 windows/s, the latter judged only when a paper result is among ``results``."""
    paper_wps = [w for _, r in results if r["model"]["arch"] == PAPER_ARCH and (w := _best_wps(r))]
    lines = []
    for name, r in results:
        fp32, cap, fp = r.get("fp32") or {}, r.get("capacity") or {}, r.get("footprint") or {}
        lean = r["model"]["arch"].startswith("lean")
        checks = []
        if fp32.get("fraction_of_peak") is not None:
            checks.append(("fp32 >= 45 % of peak", fp32["fraction_of_peak"] >= 0.45))
        if lean and paper_wps and _best_wps(r):
            ratio = _best_wps(r) / max(paper_wps)  # against the fastest paper result: the strictest
            checks.append((f"fp32 windows/s >= {LEAN_SPEEDUP:g}x the paper's ({ratio:.1f}x)", ratio >= LEAN_SPEEDUP))
        if cap:
            need = LEAN_WEARABLES if lean else PAPER_WEARABLES
            checks.append((f">= {need} wearables ({cap['wearables_per_core']})", cap["wearables_per_core"] >= need))
            checks.append(("0 drops", cap["drops"] == 0))
            if cap.get("overhead_share") is not None:
                checks.append(("overhead <= 7 %", cap["overhead_share"] <= 0.07))
        info = []
        if r.get("rss_mb") is not None:
            if lean:  # the footprint targets are the default model's, and the default is lean-wide
                checks.append(("RSS <= 80 MB", r["rss_mb"] <= 80))
                checks.append(("cold start <= 0.5 s", r["cold_start_s"] <= 0.5))
            else:
                info.append(f"RSS {r['rss_mb']:.1f} MB and cold start {r['cold_start_s']:.2f} s (footprint targets are "
                            "the default model's)")
            checks.append(("no torch import", not fp.get("torch_loaded", True)))
        lines.append(f"- {name}: " + ", ".join([*(f"{label} {'yes' if ok else '**no**'}" for label, ok in checks),
                                                *info]))
    return lines


def render(paths: list[Path]) -> str:
    results = [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(paths)]
    if not results:
        return "_No results yet: run `bash bench/run.sh`._"
    machines = sorted({f"{r['device']['cpu_model']} ({r['device']['machine']}, onnxruntime {r['device']['onnxruntime']}, "
                       f"load {r['device'].get('load_average')}) on {r['created'][:10]}" for _, r in results})
    out = ["Measured (one core, one onnxruntime thread):", ""] + measured_table(results)
    out += ["", "Machines: " + "; ".join(machines), "", "Targets of issue #5:", ""] + targets(results)
    out += ["", "**Raspberry Pi: ESTIMATES, not measurements** (the Pi core's NEON fp32 peak x the fraction of "
            "peak measured here / FLOPs per window; wearables = capacity here x the ratio of peaks, capped by that "
            "inference ceiling):", ""] + estimate_table(results)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path)
    parser.add_argument("--update-readme", action="store_true", help=f"replace the table in {README}")
    args = parser.parse_args(argv)
    text = render([p for p in args.results if p.is_file()])
    if not args.update_readme:
        print(text)
        return 0
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        print(f"{README}: markers {START} ... {END} not found", file=sys.stderr)
        return 1
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
    print(f"updated {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
