"""Untrained models of each architecture, exported exactly like trained ones, for timing.

Speed does not depend on the weights, so an architecture can be benchmarked before (or
without) training it: this writes ``DIR/ARCH.onnx`` (fp32) and ``DIR/ARCH.int8.onnx`` (QDQ
int8, calibrated on bundled HAPT windows) with random weights, full cards and sidecars.
The card says ``dataset: untrained`` so nobody mistakes one for a usable anonymiser.

    .venv/bin/python bench/make_dev_models.py --out /tmp/imu-anon-dev [--arch paper lean]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.card import ModelCard  # noqa: E402
from edge_runtime.layout import model_channels  # noqa: E402
from export.dense import densify  # noqa: E402
from export.flops import count_flops  # noqa: E402
from export.graph import DeployedAnonymiser  # noqa: E402
from export.quantise import quantise_int8  # noqa: E402
from export.weights import weights_sha256  # noqa: E402
from export.writer import OPSET, code_version, export_graph, load_model, save_model, set_metadata, utc_now  # noqa: E402
from trainer.models import ARCHES, build_anonymiser  # noqa: E402

WINDOW, HOP, RATE = 128, 10, 50.0
# HAPT magnitude statistics (|acc| in g, |gyro| in rad/s), close enough for untrained weights.
MEAN, STD = (1.02, 0.45), (0.2, 0.6)


def _card(model, arch: str, precision: str, flops: int) -> ModelCard:
    names, units = model_channels("mag")
    return ModelCard(
        window=WINDOW, hop=HOP, sample_rate_hz=RATE, channel_mode="mag", output_channels=names,
        output_units=units, mean=MEAN, std=STD, arch=arch, flops_per_window=flops, precision=precision,
        opset=OPSET, dataset="untrained", split="none (random weights, for timing only)", metrics={},
        created=utc_now(), code_version=code_version(), weights_sha256=weights_sha256(model),
    )


def _calibration(n: int = 64) -> np.ndarray:
    from edge_runtime.benchmark.workload import stream_samples

    samples = stream_samples(WINDOW + HOP * n)
    return np.stack([samples[i * HOP:i * HOP + WINDOW].T for i in range(n)]).astype(np.float32)


def make(arch: str, out: Path) -> list[Path]:
    torch.manual_seed(0)
    network = build_anonymiser(arch, 2, WINDOW).eval()
    deployed = DeployedAnonymiser(network, mean=MEAN, std=STD, channel_mode="mag")
    model = export_graph(deployed, WINDOW)
    flops = count_flops(model).total  # the network's arithmetic, before the dense rewrite
    model = densify(model)
    set_metadata(model, _card(model, arch, "fp32", flops))
    fp32 = save_model(model, out / f"{arch}.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "q.onnx"
        quantise_int8(fp32, raw, _calibration())  # writes the graph; returns the quantised node names
        q = load_model(raw)
    set_metadata(q, _card(q, arch, "int8", flops))
    int8 = save_model(q, out / f"{arch}.int8.onnx")
    print(f"{arch}: {flops / 1e6:.1f} MFLOP/window -> {fp32}, {int8}")
    return [fp32, int8]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", nargs="+", default=list(ARCHES), choices=ARCHES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for arch in args.arch:
        make(arch, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
