"""``imu-anon bench --model M [--json FILE]``: latency, throughput, capacity and footprint, here.

Everything is measured on one core (``--cpu``, default the last one this process may use)
with one onnxruntime thread (``--threads N``: N threads on N cores), and every speed is also
given as a fraction of the cores' own fp32 matmul peak measured in the same run, so figures from a busy or throttled machine still
compare. ``--quick`` runs the whole thing in well under a minute with coarser figures.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)

PARTS = ("int8", "torch", "capacity", "footprint")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="FILE.onnx", help="the exported model to measure")
    parser.add_argument("--int8", metavar="FILE.onnx",
                        help="its int8 twin (default: NAME.int8.onnx beside the model, when there is one)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="short measurements (~30 s in all): coarser figures")
    parser.add_argument("--cpu", type=int, help="the core to measure on (default: the last one allowed)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, each on its own core (default 1: one core)")
    parser.add_argument("--budget-ms", type=float, default=100.0,
                        help="p99 sample-to-publish latency a capacity step must stay under (default 100)")
    parser.add_argument("--sink", choices=("mqtt", "null"), default="mqtt",
                        help="capacity publishes to a loopback Mosquitto (default; started by the bench, or "
                             "--broker) or encodes and discards (null)")
    parser.add_argument("--source", choices=("feeder", "mqtt"), default="feeder",
                        help="how the simulated wearables reach the gateway: frames handed to its inbox in-process "
                             "(feeder, default), or published to the broker by a process on the broker's core and "
                             "read by the gateway's own MQTT source (mqtt)")
    parser.add_argument("--broker", metavar="mqtt://HOST:PORT", help="use this broker instead of starting one")
    parser.add_argument("--format", choices=("json", "binary"), default="json",
                        help="payload format of the published windows (default json, as the gateway)")
    parser.add_argument("--max-wearables", type=int, default=4000, help="stop the capacity search at this many")
    parser.add_argument("--step-s", type=float, help="seconds of signal per capacity step (default 12; quick 5)")
    parser.add_argument("--capacity-time-s", type=float, help="time limit of the capacity search (default 150; quick 30)")
    parser.add_argument("--confirm-failures", type=int, metavar="N",
                        help="run a capacity step that failed under load up to N more times before the size counts "
                             "as failed (default 1; 0: believe the first failure)")
    parser.add_argument("--skip", default="", metavar="PART[,PART]",
                        help=f"leave parts out: {', '.join(PARTS)}")


def _skips(text: str) -> set[str]:
    from edge_runtime.errors import ConfigError

    parts = {p.strip() for p in text.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise ConfigError(f"--skip: unknown part(s) {sorted(unknown)}; known: {', '.join(PARTS)}")
    return parts


def run(args: argparse.Namespace) -> int:
    from edge_runtime.anonymiser import Anonymiser
    from edge_runtime.benchmark import device, report
    from edge_runtime.benchmark.inference import bench_settings
    from edge_runtime.benchmark.peak import run_peak
    from edge_runtime.benchmark.search import retry_summary
    from edge_runtime.errors import ConfigError

    skip = _skips(args.skip)
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    settings = bench_settings(args.threads)
    model = Anonymiser.open(args.model, settings=settings)  # a bad file fails here, with the runtime's message
    card = model.card
    allowed = device.allowed_cpus()
    cpu = device.choose_cpu(args.cpu)
    cores = device.pin_to(cpu, extra=args.threads - 1)
    log.info("measuring on core(s) %s of %s", cores, allowed)

    peak = run_peak(cpu=cpu, quick=args.quick)
    log.info("peak: %.1f GFLOP/s single-thread fp32 matmul", peak["peak_gflops"])
    # With N onnxruntime threads on N cores the ceiling is N single-core peaks.
    peak_for_model = peak["peak_gflops"] * args.threads
    result = report.new_result(quick=args.quick, device=device.describe(cpu=cpu, threads=args.threads, allowed=allowed),
                               peak=peak, card=card, model_path=args.model, sha256=model.sha256)
    del model
    result["device"]["pinned_cpus"] = cores
    _variants(args, result, settings, peak_for_model, cpu, skip, card)
    if "footprint" in skip:
        result["skipped"]["footprint"] = "--skip footprint"
    else:
        from edge_runtime.benchmark.footprint import measure_footprint

        log.info("footprint: cold start and peak RSS of 'imu-anon replay'")
        fp = measure_footprint(args.model, rate_hz=card.sample_rate_hz, threads=args.threads)
        result.update(rss_mb=fp["rss_mb"], cold_start_s=fp["cold_start_s"], footprint=fp)
    if "capacity" in skip:
        result["skipped"]["capacity"] = "--skip capacity"
    else:
        result["capacity"] = _capacity(args, result, settings, card, [c for c in allowed if c not in (cores or [])])
    result["estimates"] = report.pi_estimates(result)
    print(report.format_table(result))
    retries = retry_summary((result.get("capacity") or {}).get("steps", []))
    if retries:
        print(retries)
    if args.json:
        path = report.write_json(result, args.json)
        print(f"\nwrote {path}", file=sys.stderr)
    return 0


def _variants(args, result: dict, settings, peak_gflops: float, cpu, skip: set[str], card) -> None:
    from edge_runtime.benchmark.inference import (
        measure_torch, measure_variant, torch_unavailable, variant_paths,
    )
    from edge_runtime.benchmark.timing import TimingPlan
    from edge_runtime.errors import EdgeRuntimeError

    plan = TimingPlan.quick() if args.quick else TimingPlan()
    paths = variant_paths(args.model, card.precision, args.int8)
    if "int8" in skip:
        paths.pop("int8", None)
        result["skipped"]["int8"] = "--skip int8"
    elif "int8" not in paths:
        result["skipped"]["int8"] = "no int8 model (pass --int8 FILE or put NAME.int8.onnx beside the model)"
    for name, path in paths.items():
        log.info("inference: %s %s", name, path)
        result[name] = measure_variant(path, plan=plan, peak_gflops=peak_gflops, settings=settings)
    why = "--skip torch" if "torch" in skip else torch_unavailable()
    if why is None and card.precision != "fp32":
        why = "the torch reference runs the fp32 model; pass the fp32 file as --model"
    if why is None:
        log.info("inference: torch eager reference (subprocess)")
        try:
            result["torch"] = measure_torch(args.model, cpu=cpu, quick=args.quick, peak_gflops=peak_gflops,
                                            flops_per_window=card.flops_per_window)
        except EdgeRuntimeError as exc:
            why = str(exc)
    if why is not None:
        result["skipped"]["torch"] = why


def _capacity(args, result: dict, settings, card, other_cpus: list[int]) -> dict:
    from contextlib import nullcontext

    from edge_runtime.benchmark.broker import LocalBroker
    from edge_runtime.benchmark.capacity import CapacitySettings
    from edge_runtime.benchmark.search import find_capacity

    over = {"budget_ms": args.budget_ms, "max_wearables": args.max_wearables, "payload_format": args.format,
            "source": args.source}
    if args.step_s is not None:
        over["step_s"] = args.step_s
    if args.capacity_time_s is not None:
        over["time_limit_s"] = args.capacity_time_s
    if args.confirm_failures is not None:
        over["confirm_failures"] = args.confirm_failures
    cap_settings = CapacitySettings.quick(**over) if args.quick else CapacitySettings(**over)
    main = result.get(card.precision) or {}
    ceiling = max((main.get("throughput_wps") or {"1": 1000.0}).values())
    topic = "imu-anon-bench/{stream}"
    needs_broker = not args.broker and "mqtt" in (args.sink, args.source)
    broker = LocalBroker(cpus=other_cpus) if needs_broker else nullcontext(None)
    with broker as local:
        broker_url = args.broker.rstrip("/") if args.broker else (local.url if local is not None else None)
        sink_url = f"null:?format={cap_settings.payload_format}" if args.sink == "null" else f"{broker_url}/{topic}"
        log.info("capacity: simulated 50 Hz wearables (%s) -> %s, p99 budget %g ms", args.source, sink_url,
                 cap_settings.budget_ms)
        return find_capacity(args.model, ceiling_wps=ceiling, rate_hz=card.sample_rate_hz, hop=card.hop,
                             sink_url=sink_url, sink=args.sink if not args.broker else args.broker,
                             settings=cap_settings, inference=settings, broker_url=broker_url,
                             publisher_cpus=tuple(other_cpus))
