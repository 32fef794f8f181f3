"""``imu-anon evaluate``: measure a run or an exported ONNX file against attackers and baselines.

Writes ``metrics.json``, ``README.md`` (the table, with chance beside the identity columns,
the targets and the command that reproduces it) and PNG plots into ``--out``; for a run
directory it also copies ``metrics.json`` into the run, where the exporter picks it up.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    from trainer.evaluation.methods import METHODS  # numpy only: --help stays free of torch

    parser.add_argument("model", metavar="RUN_DIR_OR_MODEL.onnx",
                        help="a run directory written by 'imu-anon train' or an .onnx file from 'imu-anon export'")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/evaluation, or "
                        "MODEL-evaluation beside an .onnx file)")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: hop 40, 2 classifier epochs, 3000 training windows per classifier; "
                        "REP only if one already exists")
    parser.add_argument("--epochs", type=int, help="classifier epochs (default 6, --quick 2)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, metavar="METHOD",
                        help=f"rows to measure (default all: {' '.join(METHODS)}); raw is always included")
    parser.add_argument("--rep", metavar="RUN_DIR_OR_ONNX", help="the REP baseline (default: RUN_DIR/rep, "
                        "trained with the run's own configuration and variant 'rep' if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every classifier and subsample (default 0)")
    parser.add_argument("--setting", help="the setting of an .onnx file that carries no training config")
    parser.add_argument("--data-path", help="the data set's location, when not the bundled data/hapt.npz")
    parser.add_argument("--hop", type=int, help="evaluation hop in samples (default: the model's; --quick 40)")
    parser.add_argument("--max-windows", type=int, help="evaluate a stratified random subset of this many windows")
    parser.add_argument("--max-train-windows", type=int,
                        help="training windows per classifier (default 12000, --quick 3000)")
    parser.add_argument("--device", default="cpu", help="torch device of the classifiers (default cpu)")
    parser.add_argument("--workers", type=int, help="classifier trainings at a time, one process each "
                        "(default: the number of cores, at most 4); the figures do not depend on it")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this evaluation, options in a fixed order."""
    parts = ["imu-anon", "evaluate", str(args.model)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    if args.quick:
        parts.append("--quick")
    for flag, value in (("--epochs", args.epochs), ("--rep", args.rep), ("--setting", args.setting),
                        ("--data-path", args.data_path), ("--hop", args.hop), ("--max-windows", args.max_windows),
                        ("--max-train-windows", args.max_train_windows)):
        if value is not None:
            parts += [flag, str(value)]
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    if args.methods:
        parts += ["--methods", *args.methods]
    return shlex.join(parts)


def _config(args: argparse.Namespace):
    from dataclasses import replace

    from trainer.evaluation.classifiers import ClassifierConfig
    from trainer.evaluation.methods import METHODS
    from trainer.evaluation.protocol import QUICK, EvalConfig

    base = QUICK if args.quick else EvalConfig()
    clf = base.classifier
    clf = ClassifierConfig(epochs=args.epochs if args.epochs is not None else clf.epochs,
                           batch_size=clf.batch_size, lr=clf.lr, device=args.device,
                           max_train_windows=args.max_train_windows or clf.max_train_windows)
    config = replace(base, classifier=clf, methods=tuple(args.methods or METHODS), seed=args.seed,
                     hop=args.hop if args.hop is not None else base.hop, max_windows=args.max_windows)
    return config if args.workers is None else replace(config, workers=args.workers)


def _rep(args: argparse.Namespace, subject, out_dir: Path, quick: bool):
    """The REP model: --rep, else RUN_DIR/rep (or OUT/rep for an .onnx file), trained with
    the evaluated model's own configuration when missing and not --quick."""
    from trainer.checkpoint import MODEL_FILE
    from trainer.errors import RunError
    from trainer.evaluation.subjects import load_subject

    if args.rep:
        return load_subject(args.rep, "rep", setting=subject.setting, data_path=args.data_path)
    rep_dir = (subject.path if subject.kind == "run" else out_dir) / "rep"
    if (rep_dir / MODEL_FILE).is_file():
        log.info("REP: reusing %s", rep_dir)
        return load_subject(rep_dir, "rep", data_path=args.data_path)
    if quick:
        log.warning("REP: none at %s and --quick does not train one; the rep row is left out "
                    "(pass --rep, or run once without --quick to train it)", rep_dir)
        return None
    if not subject.train_config:
        raise RunError(f"{subject.path} carries no training config to train REP with; pass --rep RUN_DIR "
                       "or leave rep out of --methods")
    from trainer.config import TrainConfig
    from trainer.training import train

    config = TrainConfig.from_dict({**subject.train_config, "variant": "rep"})
    resume = (rep_dir / "checkpoint.pt").is_file()
    log.info("REP: training %s with the evaluated model's configuration and variant 'rep'%s; "
             "this takes about as long as the model's own training", rep_dir, " (resuming)" if resume else "")
    train(config, rep_dir, resume=resume, device=args.device)
    return load_subject(rep_dir, "rep", data_path=args.data_path)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from trainer.evaluation.plots import write_plots
    from trainer.evaluation.protocol import Protocol
    from trainer.evaluation.report import METRICS_JSON, finalise, text_table, write_report
    from trainer.evaluation.subjects import load_subject

    subject = load_subject(args.model, "aae", setting=args.setting, data_path=args.data_path)
    model = Path(args.model)
    default_out = model / "evaluation" if subject.kind == "run" else model.with_name(model.stem + "-evaluation")
    out_dir = args.out or default_out
    config = _config(args)
    rep = _rep(args, subject, out_dir, args.quick) if "rep" in config.methods else None
    if rep is None and "rep" in config.methods:
        config = replace(config, methods=tuple(m for m in config.methods if m != "rep"))
    result = Protocol(subject, config, rep).run()
    metrics = finalise(result.metrics | {"preset": "quick" if args.quick else "full"}, _command(args))
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else write_plots(metrics, result.showcase, out_dir)
    json_path, md_path = write_report(metrics, out_dir, plots)
    if subject.kind == "run" and out_dir.resolve() != subject.path.resolve():
        shutil.copyfile(json_path, subject.path / METRICS_JSON)
    print(text_table(metrics))
    print(f"\nwrote {json_path}, {md_path}" + (f" and {len(plots)} plots" if plots else ""))
    return 0
