"""``imu-anon replay FILE --model M --speed 1|10|max --sink ...``: a recording through the
same pipeline as ``run`` (same streams, batching, anonymiser, sinks), then a summary."""

from __future__ import annotations

import argparse
import json
import sys

RECORDING_SCHEMES = ("file:", "npz:", "frames:", "loop:")


def configure(parser: argparse.ArgumentParser) -> None:
    from edge_runtime import config

    parser.add_argument("recording", metavar="FILE",
                        help="a CSV recording (t,acc_x,...,gyro_z), a HAPT npz (npz:PATH?user=9) "
                             "or a frame capture (.imuf)")
    parser.add_argument("--speed", default="max",
                        help="1 = real time, 10 = ten times faster, max = no waiting (default)")
    parser.add_argument("--config", metavar="FILE.toml", help="gateway configuration (flags override it)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    config.add_flags(parser, skip={"source"})


def run(args: argparse.Namespace) -> int:
    from edge_runtime import config
    from edge_runtime.gateway import open_gateway
    from edge_runtime.sources import parse_speed

    parse_speed(args.speed)  # a bad value fails before the model loads
    source = args.recording if args.recording.startswith(RECORDING_SCHEMES) else f"file:{args.recording}"
    overrides = config.flag_overrides(args)
    overrides.setdefault("pipeline", {})["sources"] = (source,)
    overrides["pipeline"].setdefault("sinks", ("null:",))
    cfg = config.build(config.read_file(args.config) if args.config else {}, overrides)
    from edge_runtime.commands.run import StopOnSignals

    with open_gateway(cfg, speed=args.speed) as pipeline:
        with StopOnSignals(pipeline):
            summary = pipeline.run()
    c = pipeline.metrics.snapshot()  # after the sinks closed: their last drops are counted too
    out = sys.stderr if any(s.startswith("stdout:") for s in cfg.pipeline.sinks) else sys.stdout
    report = {
        "recording": args.recording, "speed": args.speed, "elapsed_s": round(summary.elapsed_s, 3),
        "samples": c.get("samples_in", 0), "windows": c.get("windows_anonymised", 0),
        "messages": c.get("messages_out", 0), "streams": len(pipeline.streams),
        "latency_ms": {"p50": round(summary.latency_ms[0], 3), "p99": round(summary.latency_ms[1], 3)},
        "inference_ms": {"p50": round(summary.inference_ms[0], 3), "p99": round(summary.inference_ms[1], 3)},
        "counters": c,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True), file=out)
        return 0
    rate = pipeline.anonymiser.card.sample_rate_hz
    signal_s = report["samples"] / rate
    print(f"replayed {args.recording}: {signal_s:.1f} s of signal in {summary.elapsed_s:.2f} s "
          f"({signal_s / max(summary.elapsed_s, 1e-9):.0f}x real time)", file=out)
    print(f"  windows {report['windows']}, messages {report['messages']}, streams {report['streams']}, "
          f"gaps {c.get('gaps', 0)}, samples not in any window {c.get('samples_unwindowed', 0)}", file=out)
    print(f"  latency  p50 {summary.latency_ms[0]:.2f} ms  p99 {summary.latency_ms[1]:.2f} ms"
          "  (window ready -> written)", file=out)
    print(f"  inference p50 {summary.inference_ms[0]:.2f} ms  p99 {summary.inference_ms[1]:.2f} ms  (one batched call)",
          file=out)
    return 0
