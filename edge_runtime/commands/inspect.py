"""``imu-anon inspect FILE.onnx``: the model card, the I/O signature, and whether it loads."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="FILE.onnx", help="an exported model (its .sha256 beside it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-verify", action="store_true", help="do not check the .sha256 sidecar")


def describe(path: str, verify: bool = True) -> dict:
    """Everything ``inspect`` prints, as a dict; raises the loader's errors for broken files."""
    from dataclasses import asdict
    from pathlib import Path

    from edge_runtime.anonymiser import Anonymiser

    model = Anonymiser.open(path, verify=verify)
    return {"file": str(Path(path)), "size_bytes": Path(path).stat().st_size, "sha256": model.sha256,
            "verified": verify, "card": asdict(model.card), **model.signature()}


def run(args: argparse.Namespace) -> int:
    info = describe(args.model, verify=not args.no_verify)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=list))
        return 0
    card = info["card"]
    print(f"{info['file']}  ({info['size_bytes']} bytes, sha256 {info['sha256'][:16]}..."
          f"{' verified' if info['verified'] else ' NOT verified'})")
    print("card:")
    for key in sorted(k for k in card if k != "metrics"):
        value = card[key]
        print(f"  {key:<17} {', '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}")
    print("metrics:")
    for key, value in sorted(card["metrics"].items()) or [("(none)", "")]:
        print(f"  {key:<17} {value}")
    print("signature:")
    for kind in ("inputs", "outputs"):
        for io in info[kind]:
            shape = ", ".join(str(d) for d in io["shape"])
            print(f"  {kind[:-1]:<6} {io['name']:<11} {io['type']} [{shape}]")
    return 0
