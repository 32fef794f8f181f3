"""``imu-anon train``: learn an anonymiser into a run directory.

Defaults < preset (--quick) < TOML file (--config) < flags. Imports torch only in ``run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainer.config import ARCHES

_FLAG_FIELDS = {  # flag dest -> TrainConfig field
    "dataset": "dataset", "data_path": "data_path", "setting": "setting", "channels": "channel_mode",
    "arch": "arch", "variant": "variant", "window": "window", "hop": "hop", "rounds": "rounds",
    "seed": "seed", "batch_size": "batch_size", "lr": "lr", "max_windows": "max_windows",
    "beta_i_enc": "beta_i_enc", "beta_i_dec": "beta_i_dec", "beta_a": "beta_a", "beta_a_raw": "beta_a_raw",
    "beta_d": "beta_d", "activity_folds": "activity_folds",
    "adversaries": "adversaries", "online_adversary_steps": "online_adversary_steps",
    "epoch_fraction": "epoch_fraction",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="run directory to create (e.g. runs/NAME)")
    parser.add_argument("--dataset", choices=("hapt", "uci-hapt-raw", "motionsense"),
                        help="data set (default hapt, the bundled copy)")
    parser.add_argument("--data-path", help="file or folder of the data set (RawData, A_DeviceMotion_data)")
    parser.add_argument("--setting", help="evaluation setting: hapt-walk3 (default), hapt-6, motionsense-4")
    parser.add_argument("--quick", action="store_true", help="small preset for demos and CI (minutes on 2 cores)")
    parser.add_argument("--config", type=Path, help="TOML file with TrainConfig keys (optionally under [train])")
    parser.add_argument("--arch", choices=ARCHES, help="anonymiser architecture (see trainer/models/anonymiser.py)")
    parser.add_argument("--channels", choices=("mag", "axes"), help="model channels: 2 magnitudes or 6 axes")
    parser.add_argument("--variant", choices=("aae", "rep"), help="rep: only the latent is anonymised")
    parser.add_argument("--epochs", type=int, help="epochs of every phase (pre-training, regularisers, AAE)")
    parser.add_argument("--rounds", type=int, help="most rounds of the Fig. 6 procedure")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--window", type=int)
    parser.add_argument("--hop", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--max-windows", type=int, help="cap on training windows")
    parser.add_argument("--epoch-fraction", type=float, help="share of the training windows one epoch draws")
    parser.add_argument("--beta-i-enc", type=float, help="weight of the latent identity loss")
    parser.add_argument("--beta-i-dec", type=float, help="weight of the output identity loss")
    parser.add_argument("--beta-a", type=float, help="weight of the activity cross-entropy")
    parser.add_argument("--beta-a-raw", type=float,
                        help="weight of the activity cross-entropy through a frozen classifier trained on raw data")
    parser.add_argument("--activity-folds", type=int,
                        help="user folds of the activity regulariser (2+: cross-fitted, 1: the paper's)")
    parser.add_argument("--beta-d", type=float, help="weight of the distortion (MSE)")
    parser.add_argument("--adversaries", type=int, help="identity adversaries on the output")
    parser.add_argument("--online-adversary-steps", type=int,
                        help="adversary updates per AAE step (0: the paper's frozen regularisers)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_config(args: argparse.Namespace):
    from trainer.config import DEFAULT, QUICK, TrainConfig

    config = QUICK if args.quick else DEFAULT
    if args.config:
        config = TrainConfig.from_toml(args.config, base=config)
    changes = {field: getattr(args, dest) for dest, field in _FLAG_FIELDS.items() if getattr(args, dest) is not None}
    if args.epochs is not None:
        changes.update(pretrain_epochs=args.epochs, reg_epochs=args.epochs, aae_epochs=args.epochs)
    if "dataset" in changes and args.setting is None and changes["dataset"] == "motionsense":
        changes["setting"] = "motionsense-4"
    return TrainConfig.from_dict(changes, base=config)


def run(args: argparse.Namespace) -> int:
    import json

    config = resolve_config(args)  # before importing torch, so a bad option fails fast

    from trainer.training import train

    run_ = train(config, args.out, resume=args.resume, progress=False if args.no_progress else None,
                 device=args.device, threads=args.threads)
    h = run_.history
    raw = h.get("raw") or {}
    best = next((s for s in h.get("states", []) if s["round"] == h.get("best_round")), {})
    summary = {
        "run": str(args.out), "arch": config.arch, "channels": config.channel_mode, "variant": config.variant,
        "stopped": h.get("stopped"), "kept_round": h.get("best_round"), "wall_s": round(h.get("wall_s", 0.0), 1),
        "validation": {
            "raw_activity_acc": raw.get("activity_acc"), "raw_identity_acc": raw.get("identity_acc"),
            "activity_acc": best.get("activity_acc"), "identity_acc_retrained": best.get("identity_acc"),
            "identity_acc_raw_attacker": best.get("raw_attacker_identity_acc"), "chance": raw.get("chance"),
        },
    }
    print(f"trained {args.out} ({config.arch}, {config.channel_mode}, {config.variant}) in "
          f"{summary['wall_s']} s: {summary['stopped']}; kept round {summary['kept_round']}")
    print(json.dumps(summary["validation"], indent=None, sort_keys=True))
    return 0
