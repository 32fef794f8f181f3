"""Turning the deployed graph into a checked ONNX file with its card and its sidecar.

The file is written in one go -- graph, ``metadata_props``, ``onnx.checker`` with full
shape checking, then ``NAME.onnx.sha256`` -- so a file without its card or its sidecar is
never left behind by a successful export. Re-writing the card (after the file has been
evaluated) keeps the weights bit for bit and refuses if they changed.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path

import onnx
import torch

from edge_runtime.card import INPUT_NAME, OUTPUT_NAME, PREFIX, ModelCard
from edge_runtime.errors import ModelCardError
from edge_runtime.integrity import write_sidecar
from edge_runtime.layout import RAW_CHANNELS
from export.errors import ExportError
from export.graph import DeployedAnonymiser
from export.weights import weights_sha256

log = logging.getLogger(__name__)

# 18 is the lowest opset the torch.export-based exporter of torch 2.13 implements natively
# (asking for 17 triggers a version conversion); onnxruntime 1.14 and newer run it.
OPSET = 18
# Metadata beyond the card: the trainer's resolved configuration, for audit and reproduction.
CONFIG_KEY = PREFIX + "train_config"


ARTEFACTS = ("models", "reports", "bench/results")  # what the commands write into the checkout


def code_version() -> str:
    """``imu-anon`` version plus the git commit when run from a checkout (``.dirty`` if its code is
    edited). Released artefacts (``models/``, ``reports/``, ``bench/results/``) do not count: an
    export writes the fp32 file before the int8 one, and a card must not call the code dirty
    because its sibling was just written."""
    from imu_anon import __version__

    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10,
        )
        if commit.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in ARTEFACTS)],
            cwd=repo, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    suffix = ".dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
    return f"{__version__}+g{commit.stdout.strip()}{suffix}"


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs every rewrite at INFO and missing torchvision ops at WARNING; only its
    errors concern the user."""
    names = ("torch.onnx", "onnxscript", "onnx_ir")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def strip_debug_info(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug records: Python stack traces with this machine's paths
    and FX dumps, which are a third of a small file and tell a gateway nothing."""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        del value.metadata_props[:]
    for init in model.graph.initializer:
        del init.metadata_props[:]
    del model.graph.metadata_props[:]


def export_graph(deployed: DeployedAnonymiser, window: int, *, opset: int = OPSET) -> onnx.ModelProto:
    """``deployed`` as an ONNX graph ``imu`` [batch, 6, window] -> ``anonymised`` [batch, C, window]."""
    deployed = deployed.eval()
    # Batch 2, not 1: an example of size 1 lets the tracer specialise the batch axis away.
    example = torch.randn(2, len(RAW_CHANNELS), window, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
        warnings.simplefilter("ignore")  # the exporter's FutureWarnings are about torch internals
        try:
            program = torch.onnx.export(
                deployed, (example,), dynamo=True, verbose=False, report=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                dynamic_shapes={"imu": {0: batch}}, external_data=False,
            )
        except Exception as exc:  # the exporter raises many private types; say what failed
            raise ExportError(
                f"torch.onnx.export failed for the {type(deployed.network).__name__} network: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                "run with -v for the exporter's traceback"
            ) from exc
    model = program.model_proto
    model.producer_name = "imu-anon"
    strip_debug_info(model)
    _check_signature(model, window)
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _check_signature(model: onnx.ModelProto, window: int) -> None:
    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"exported graph has inputs {inputs} and outputs {outputs}, "
                          f"expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    dims_in, dims_out = _dims(graph.input[0]), _dims(graph.output[0])
    if not isinstance(dims_in[0], str) or dims_in[1:] != [len(RAW_CHANNELS), window]:
        raise ExportError(f"exported input shape {dims_in} is not [batch, {len(RAW_CHANNELS)}, {window}]")
    if not isinstance(dims_out[0], str) or dims_out[2] != window:
        raise ExportError(f"exported output shape {dims_out} is not [batch, C, {window}]; "
                          "the network must keep the window length")


def set_metadata(model: onnx.ModelProto, card: ModelCard, extra: dict[str, str] | None = None) -> None:
    """Replace ``model``'s ``imu_anon.*`` metadata with ``card`` (and ``extra`` keys)."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    entries = dict(kept) | (extra or {}) | card.to_metadata()
    del model.metadata_props[:]
    for key, value in sorted(entries.items()):
        model.metadata_props.add(key=key, value=value)


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Check ``model`` and its card, write it to ``path`` and its sha256 sidecar beside it."""
    path = Path(path)
    card = read_card(model, source=str(path))
    if card.weights_sha256 != weights_sha256(model):
        raise ExportError(f"{path}: the card's weights_sha256 does not match the graph's weights; "
                          "build the card from this very graph")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path}: onnx.checker rejected the exported graph: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)  # never leave a half-written model under the real name
    write_sidecar(path)
    log.info("wrote %s (%d bytes) and %s.sha256", path, path.stat().st_size, path.name)
    return path


def read_card(model: onnx.ModelProto | str | Path, source: str | None = None) -> ModelCard:
    """The card of a model proto or file; a ModelCardError lists every problem."""
    if not isinstance(model, onnx.ModelProto):
        source = source or str(model)
        model = load_model(model)
    return ModelCard.from_metadata(metadata(model), source=source or "model")


def load_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    try:
        return onnx.load_model(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ExportError(f"{path}: not a readable ONNX file ({type(exc).__name__}); export it again") from exc


def rewrite_card(path: str | Path, card: ModelCard) -> ModelCard:
    """Replace the card of the file at ``path`` (same weights), re-check it and rewrite its sidecar."""
    model = load_model(path)
    try:
        old = read_card(model, source=str(path))
    except ModelCardError as exc:
        raise ExportError(f"{path}: cannot rewrite the card of a file whose card is broken: {exc}") from exc
    if card.weights_sha256 != old.weights_sha256 or weights_sha256(model) != old.weights_sha256:
        raise ExportError(f"{path}: the new card is for other weights ({card.weights_sha256[:12]}... vs "
                          f"{old.weights_sha256[:12]}...); export again instead of re-labelling")
    # Old imu_anon.* keys beyond the card (the training config) stay; the card's own are replaced.
    set_metadata(model, card, {k: v for k, v in metadata(model).items() if k.startswith(PREFIX)})
    save_model(model, path)
    return card
