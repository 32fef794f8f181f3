"""Export end to end: a tiny really-trained run -> ``imu-anon export --int8`` -> files a gateway can trust."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_runtime.anonymiser import Anonymiser
from edge_runtime.card import INPUT_NAME, OUTPUT_NAME, ModelCard
from edge_runtime.integrity import file_sha256, verify_sidecar
from edge_runtime.layout import STANDARD_GRAVITY
from export.errors import ExportError
from export.exporter import ExportOptions, attach_metrics, ExportedFile, export_run
from export.parity import compare
from export.timing import windows_per_second
from export.windows import ExportWindows
from export.weights import weights_sha256
from export.writer import CONFIG_KEY, read_card, rewrite_card
from export_support import Exported, tiny_export, tiny_run_dir
from imu_anon import __version__
from trainer.checkpoint import load_run
from trainer.data import get_setting, load_dataset, make_windows, subject_split
from trainer.models import count_flops as torch_flops

pytestmark = pytest.mark.integration
INT8_RELATIVE = 0.15  # int8 vs fp32: RMS error at most 15 % of the output's variation ...
INT8_MEAN_ABS = 0.01  # ... and a mean absolute error under 0.01 g (or rad/s)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    return tiny_export(tmp_path_factory)


@pytest.fixture(scope="session")
def held_out(run_dir: Path) -> np.ndarray:
    """1,200 real HAPT windows of the users the run never saw, cut independently of the exporter."""
    run = load_run(run_dir)
    setting = get_setting(run.setting)
    ws = make_windows(load_dataset(run.dataset), setting, run.window, run.hop)
    _, test = subject_split(ws, setting.test_users)
    pick = np.random.default_rng(1).choice(test, size=1200, replace=False)
    return ws.x[np.sort(pick)]


def _onnxruntime(path: Path, raw: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: raw})[0]


def test_the_command_prints_parity_int8_error_and_sizes(exported: Exported) -> None:
    out = exported.stdout
    parity = re.search(r"fp32 parity vs PyTorch: max \|diff\| (\S+), .* over (\d+) windows", out)
    assert parity, out
    assert float(parity.group(1)) <= 1e-4 and int(parity.group(2)) >= 1000
    assert re.search(r"int8 vs fp32: max \|diff\| \S+, mean \|diff\| \S+, relative \S+ %", out), out
    summary = json.loads(exported.summary.read_text())
    for precision, path in (("fp32", exported.fp32), ("int8", exported.int8)):
        entry = summary["files"][precision]
        assert entry["bytes"] == path.stat().st_size
        assert f"{path.name}  {path.stat().st_size / 1024:.1f} KiB" in out


def test_throughput_is_measured_on_the_file_as_a_gateway_runs_it(exported: Exported, held_out: np.ndarray) -> None:
    for batch in (1, 16):
        rate = windows_per_second(exported.int8, held_out[:64], batch=batch, seconds=0.2)
        assert 10 < rate < 1e6  # a lean model does thousands a second; a hang or a no-op would not land here


def test_each_file_has_a_sidecar_that_sha256sum_accepts(exported: Exported) -> None:
    for path in (exported.fp32, exported.int8):
        assert verify_sidecar(path) == file_sha256(path)
        check = subprocess.run(["sha256sum", "-c", path.name + ".sha256"], cwd=path.parent,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0 and check.stdout.strip() == f"{path.name}: OK"


def test_the_card_round_trips_and_describes_the_run_it_came_from(exported: Exported, run_dir: Path) -> None:
    run = load_run(run_dir)
    session = ort.InferenceSession(str(exported.fp32), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    card = ModelCard.from_metadata(props)
    model = onnx.load(str(exported.fp32))
    assert (card.window, card.hop, card.sample_rate_hz, card.channel_mode) == (128, 20, 50.0, "mag")
    assert card.input_units == ("g", "g", "g", "rad/s", "rad/s", "rad/s")
    assert card.output_channels == ("acc_mag", "gyro_mag") and card.output_units == ("g", "rad/s")
    assert card.mean == tuple(float(v) for v in run.standardiser.mean)
    assert card.std == tuple(float(v) for v in run.standardiser.std)
    assert (card.arch, card.dataset, card.split) == ("lean", "hapt", "subject:test=[2,4,9,10,12,13]")
    assert card.precision == "fp32"
    assert card.opset == {o.domain: o.version for o in model.opset_import}[""] >= 17
    assert card.flops_per_window == torch_flops(run.model, 2, 128)
    assert card.weights_sha256 == weights_sha256(model)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", card.created)
    assert card.code_version.startswith(__version__)
    assert json.loads(props[CONFIG_KEY]) == run.config.to_dict()
    parity = card.metrics["export"]["parity_vs_pytorch"]
    assert parity["windows"] >= 1000 and parity["max_abs"] <= 1e-4
    assert card.metrics["measured_on"].startswith("not evaluated at export")


def test_onnxruntime_matches_pytorch_within_1e4_on_real_held_out_windows(exported: Exported, run_dir: Path,
                                                                         held_out: np.ndarray) -> None:
    onnx.checker.check_model(onnx.load(str(exported.fp32)), full_check=True)
    got = _onnxruntime(exported.fp32, held_out)
    expected = load_run(run_dir).anonymise(held_out)
    assert got.shape == (1200, 2, 128)
    assert float(np.abs(got - expected).max()) <= 1e-4


def test_the_batch_axis_is_dynamic(exported: Exported, held_out: np.ndarray) -> None:
    whole = _onnxruntime(exported.fp32, held_out[:64])
    for n in (1, 7):
        np.testing.assert_allclose(_onnxruntime(exported.fp32, held_out[:n]), whole[:n], atol=1e-5)


def test_the_file_runs_on_a_gateway_without_torch(exported: Exported, held_out: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "raw.npy", held_out[:32])
    np.save(tmp_path / "expected.npy", _onnxruntime(exported.fp32, held_out[:32]))
    code = (
        "import sys, numpy as np\n"
        "from edge_runtime.anonymiser import Anonymiser\n"
        f"model = Anonymiser.open({str(exported.fp32)!r})\n"
        f"out = model.anonymise(np.load({str(tmp_path / 'raw.npy')!r}))\n"
        f"print(float(np.abs(out - np.load({str(tmp_path / 'expected.npy')!r})).max()))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'scipy')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    diff, heavy = proc.stdout.strip().splitlines()
    assert float(diff) == 0.0 and heavy == "[]"


def test_the_int8_file_is_its_own_model_and_stays_close_to_fp32(exported: Exported, held_out: np.ndarray) -> None:
    fp32, int8 = read_card(exported.fp32), read_card(exported.int8)
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.weights_sha256 == weights_sha256(onnx.load(str(exported.int8))) != fp32.weights_sha256
    assert int8.flops_per_window == fp32.flops_per_window
    ops = {n.op_type for n in onnx.load(str(exported.int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "ConvTranspose" not in ops  # export.dense
    assert exported.int8.stat().st_size * 1.5 < exported.fp32.stat().st_size
    gap = compare(_onnxruntime(exported.int8, held_out), _onnxruntime(exported.fp32, held_out))
    assert gap.relative <= INT8_RELATIVE and gap.mean_abs <= INT8_MEAN_ABS, gap
    recorded = int8.metrics["export"]
    assert recorded["int8_vs_fp32"]["windows"] >= 1000 and recorded["reduce_range"] in (True, False)
    assert recorded["calibration_windows"] == 300
    # the first and last convolutions stay fp32: their weights are plain float initializers
    model = onnx.load(str(exported.int8))
    inits = {i.name: i for i in model.graph.initializer}
    kept = [n for n in model.graph.node if n.name in recorded["kept_fp32"]]
    assert len(kept) == 2 and all(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in kept)


def test_a_device_sending_metres_per_second_squared_gets_a_graph_that_converts(
        run_dir: Path, held_out: np.ndarray, tmp_path: Path) -> None:
    run = load_run(run_dir)
    windows = ExportWindows(parity=held_out[:1000], calibration=held_out[:16], description="held-out sample")
    report = export_run(run, tmp_path / "si.onnx", ExportOptions(acc_unit="m/s^2", parity_windows=1000), windows)
    assert report.fp32.card.input_units == ("m/s^2",) * 3 + ("rad/s",) * 3
    assert report.parity.max_abs <= 1e-4
    si = held_out[:200].copy()
    si[:, 0:3] *= STANDARD_GRAVITY
    np.testing.assert_allclose(_onnxruntime(report.fp32.path, si), run.anonymise(held_out[:200]), atol=1e-4)


def test_new_metrics_rewrite_the_card_and_sidecar_but_never_the_weights(exported: Exported, tmp_path: Path) -> None:
    path = tmp_path / "copy.onnx"
    shutil.copy(exported.fp32, path)
    shutil.copy(exported.fp32.with_name(exported.fp32.name + ".sha256"), tmp_path / "copy.onnx.sha256")
    before = read_card(path)
    after = attach_metrics(ExportedFile(path=path, card=before), {"activity_f1": 88.8})
    assert after.card.metrics["activity_f1"] == 88.8 and "export" in after.card.metrics
    assert read_card(path).weights_sha256 == before.weights_sha256 == weights_sha256(onnx.load(str(path)))
    assert verify_sidecar(path) == file_sha256(path) != file_sha256(exported.fp32)
    assert Anonymiser.open(path).card.metrics["activity_f1"] == 88.8
    with pytest.raises(ExportError, match="the new card is for other weights"):
        rewrite_card(path, before.replace(weights_sha256="0" * 64))
