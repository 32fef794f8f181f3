"""``imu-anon export RUN_DIR --out models/NAME.onnx [--int8]``: the command.

Writes ``NAME.onnx`` (and ``NAME.int8.onnx``), each with its ``.sha256`` sidecar and a card
carrying the metrics measured on that very file, and prints what it measured: file sizes,
FLOPs, fp32 parity against PyTorch, int8 versus fp32, the evaluation of each file and
throughput on this CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from edge_runtime.layout import ACC_UNITS

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by 'imu-anon train'")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write the fp32 model")
    parser.add_argument("--int8", action="store_true",
                        help="also write FILE.int8.onnx (static QDQ int8 calibrated on training windows)")
    parser.add_argument("--input-units", choices=sorted(ACC_UNITS), default="g",
                        help="the unit the device sends acceleration in; the graph converts (default: g)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--no-evaluate", action="store_true",
                        help="skip evaluating the files (fast); their cards then say so")
    source.add_argument("--metrics", metavar="JSON",
                        help="metrics.json of 'imu-anon evaluate FILE.onnx' for the fp32 file, instead of evaluating")
    parser.add_argument("--int8-metrics", metavar="JSON", help="the same for the int8 file")
    parser.add_argument("--quick-evaluation", action="store_true",
                        help="evaluate with the evaluator's quick protocol (minutes less, figures rougher)")
    parser.add_argument("--evaluation-windows", type=int, default=None, metavar="N",
                        help="cap on the windows the evaluation uses (default: all of the setting)")
    parser.add_argument("--parity-windows", type=int, default=2000, metavar="N",
                        help="held-out windows for the parity check (at least 1000; default 2000)")
    parser.add_argument("--calibration-windows", type=int, default=300, metavar="N",
                        help="training windows to calibrate int8 on (default 300)")
    parser.add_argument("--calibration", choices=("minmax", "moving-average"), default="minmax",
                        help="int8 activation ranges: minmax never clips (default); moving-average has a "
                             "lower average error but clips rare extremes")
    parser.add_argument("--reduce-range", choices=("auto", "on", "off"), default="auto",
                        help="7-bit int8 weights: auto = on for x86 without VNNI (default)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the window samples (default 0)")
    parser.add_argument("--no-timing", action="store_true", help="skip the windows/s measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON")


def _options(args: argparse.Namespace):
    from export.exporter import ExportOptions
    from export.writer import OPSET

    return ExportOptions(
        acc_unit=args.input_units, opset=args.opset or OPSET, int8=args.int8,
        reduce_range={"auto": None, "on": True, "off": False}[args.reduce_range], calibration=args.calibration,
        parity_windows=args.parity_windows, calibration_windows=args.calibration_windows, seed=args.seed,
    )


def _evaluation(args: argparse.Namespace, exported, metrics_file: str | None, run) -> dict[str, Any]:
    """The metrics of ``exported`` (an ExportedFile) for its card, by the route the flags chose."""
    from export.evaluation import check_measured_on, evaluate_file, load_metrics_file, summarise

    if metrics_file:
        summary = load_metrics_file(metrics_file)
        notes = check_measured_on(summary, exported.path, exported.card.precision)
        for note in notes:
            log.warning("%s", note)
        return summary | ({"notes": notes} if notes else {})
    if args.no_evaluate:
        note = "not evaluated at export (--no-evaluate)"
        if run.metrics:
            return {"measured_on": note + "; 'checkpoint' holds the run's own evaluation",
                    "checkpoint": summarise(run.metrics)}
        return {"measured_on": note}
    return evaluate_file(exported.path, quick=args.quick_evaluation, max_windows=args.evaluation_windows)


def run(args: argparse.Namespace) -> int:
    from edge_runtime.integrity import sidecar_path
    from export.errors import ExportError
    from export.evaluation import int8_gaps
    from export.exporter import attach_metrics, export_run
    from export.parity import from_g
    from export.timing import windows_per_second
    from export.windows import windows_for_run
    from trainer.checkpoint import load_run

    options = _options(args)
    if not args.out.endswith(".onnx"):  # before loading anything: a typo should cost nothing
        raise ExportError(f"{args.out}: the output file name must end in .onnx")
    if args.int8_metrics and not args.int8:
        raise ExportError("--int8-metrics is for the int8 file; add --int8 or drop it")
    run_ = load_run(args.run_dir)
    windows = windows_for_run(run_, parity=options.parity_windows, calibration=options.calibration_windows,
                              seed=options.seed)
    report = export_run(run_, args.out, options, windows)
    files = [report.fp32] + ([report.int8] if report.int8 else [])
    summary: dict[str, Any] = {"run": str(args.run_dir), "windows": report.windows, "files": {}}

    evaluations = {}
    for exported, metrics_file in zip(files, (args.metrics, args.int8_metrics)):
        evaluations[exported.card.precision] = _evaluation(args, exported, metrics_file, run_)
    gaps = {}
    if report.int8 and "fp32" in evaluations and "int8" in evaluations:
        gaps = int8_gaps(evaluations["fp32"], evaluations["int8"])
        if gaps:
            evaluations["int8"]["vs_fp32_points"] = gaps
    for i, exported in enumerate(files):
        files[i] = attach_metrics(exported, evaluations[exported.card.precision])

    sample = from_g(windows.parity[:256], options.acc_unit)
    for exported in files:
        card = exported.card
        entry: dict[str, Any] = {
            "path": str(exported.path), "sidecar": str(sidecar_path(exported.path)), "bytes": exported.size_bytes,
            "weights_sha256": card.weights_sha256, "flops_per_window": card.flops_per_window,
            "opset": card.opset, "metrics": dict(card.metrics),
        }
        if not args.no_timing:
            entry["windows_per_s_batch1"] = round(windows_per_second(exported.path, sample, batch=1), 1)
            entry["windows_per_s_batch64"] = round(windows_per_second(exported.path, sample, batch=64), 1)
        summary["files"][card.precision] = entry

    _print_summary(args, run_, options, report, summary, evaluations, gaps)
    if args.json:
        Path(args.json).write_text(json.dumps(summary | {"int8_gaps_points": gaps}, indent=2) + "\n",
                                   encoding="utf-8")
    return 0


def _print_summary(args, run_, options, report, summary: dict[str, Any], evaluations: dict[str, Any],
                   gaps: dict[str, float]) -> None:
    from export.evaluation import INT8_POINTS, beyond

    print(f"exported {args.run_dir} ({run_.arch}, {run_.channel_mode}, window {run_.window} hop {run_.hop} "
          f"at {run_.rate_hz:g} Hz, acc in {options.acc_unit})")
    print(f"  measured on {report.windows}")
    for precision, entry in summary["files"].items():
        speed = ""
        if "windows_per_s_batch1" in entry:
            speed = (f", {entry['windows_per_s_batch1']:.0f} windows/s at batch 1, "
                     f"{entry['windows_per_s_batch64']:.0f} at batch 64 (1 thread)")
        print(f"  {precision}: {entry['path']}  {entry['bytes'] / 1024:.1f} KiB, "
              f"{entry['flops_per_window'] / 1e6:.2f} MFLOP/window, opset {entry['opset']}{speed}")
        print(f"        weights sha256 {entry['weights_sha256']}; sidecar {Path(entry['sidecar']).name}")
    print(f"  fp32 parity vs PyTorch: {report.parity} (tolerance {options.tolerance:g})")
    if report.int8:
        ratio = summary["files"]["fp32"]["bytes"] / summary["files"]["int8"]["bytes"]
        print(f"  int8 vs fp32: {report.int8_vs_fp32}; reduce_range {report.reduce_range}; "
              f"file {ratio:.1f}x smaller")
    for precision, metrics in evaluations.items():
        print(f"  {precision} evaluation: {_metrics_line(metrics)}")
    if gaps:
        off = beyond(gaps, INT8_POINTS)
        if off:
            print("  int8 is NOT within {:g} point of fp32 on: {}".format(
                INT8_POINTS, ", ".join(f"{k} {v:+.2f}" for k, v in off.items())))
        else:
            print(f"  int8 is within {INT8_POINTS:g} point of fp32 on every compared figure "
                  f"({', '.join(f'{k} {v:+.2f}' for k, v in gaps.items())})")


def _metrics_line(metrics: dict[str, Any]) -> str:
    shown = [f"{k} {metrics[k]}" for k in ("activity_f1", "identity_acc_raw_attacker", "identity_acc_adaptive",
                                             "identity_acc_adaptive_cross_session") if k in metrics]
    if not shown:
        return str(metrics.get("measured_on", "none"))
    return ", ".join(shown)
