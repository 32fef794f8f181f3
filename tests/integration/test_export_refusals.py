"""Deliberately broken copies of a really-exported file are refused, by the runtime loader and by
``imu-anon inspect``, with a message that says what is wrong; bad export requests likewise."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import run_cli
from edge_runtime.anonymiser import Anonymiser
from edge_runtime.errors import IntegrityError, ModelCardError, ModelFileError
from edge_runtime.integrity import write_sidecar
from export.errors import ExportError
from export.exporter import ExportOptions
from export_support import Exported, tiny_export, tiny_run_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    return tiny_export(tmp_path_factory)


def _copy(exported: Exported, tmp_path: Path, name: str = "broken.onnx") -> Path:
    path = tmp_path / name
    shutil.copy(exported.fp32, path)
    write_sidecar(path)
    return path


def _edit(path: Path, change: Callable[[onnx.ModelProto], None], *, resign: bool = True) -> Path:
    """Change the model and save it; ``resign`` rewrites the sidecar, as a careless tool would,
    so the refusal must come from the content, not from the checksum."""
    model = onnx.load(str(path))
    change(model)
    onnx.save(model, str(path))
    if resign:
        write_sidecar(path)
    return path


def _set_prop(key: str, value: str | None) -> Callable[[onnx.ModelProto], None]:
    def change(model: onnx.ModelProto) -> None:
        props = {p.key: p.value for p in model.metadata_props}
        if value is None:
            props.pop(key)
        else:
            props[key] = value
        del model.metadata_props[:]
        for k, v in props.items():
            model.metadata_props.add(key=k, value=v)
    return change


def _rename_input(model: onnx.ModelProto) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = "x"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = "x"


def _inspect_error(path: Path) -> str:
    proc = run_cli("inspect", str(path), timeout=120)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_the_intact_export_is_accepted_and_inspect_prints_card_and_signature(exported: Exported) -> None:
    proc = run_cli("inspect", str(exported.int8), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["verified"] is True
    assert info["card"]["precision"] == "int8" and info["card"]["window"] == 128
    assert info["card"]["metrics"]["export"]["int8_vs_fp32"]["windows"] >= 1000
    assert [i["name"] for i in info["inputs"]] == ["imu"] and [o["name"] for o in info["outputs"]] == ["anonymised"]


def test_a_file_missing_a_metadata_key_is_refused_naming_the_key(exported: Exported, tmp_path: Path) -> None:
    path = _edit(_copy(exported, tmp_path), _set_prop("imu_anon.hop", None))
    with pytest.raises(ModelCardError, match="missing metadata key 'imu_anon.hop'"):
        Anonymiser.open(path)
    assert "missing metadata key 'imu_anon.hop'" in _inspect_error(path)


def test_a_std_of_the_wrong_length_is_refused(exported: Exported, tmp_path: Path) -> None:
    path = _edit(_copy(exported, tmp_path), _set_prop("imu_anon.std", "[0.3, 0.4, 0.5]"))
    with pytest.raises(ModelCardError, match="std has 3 values for 2 channels"):
        Anonymiser.open(path)
    assert "std has 3 values for 2 channels" in _inspect_error(path)


def test_a_card_whose_window_disagrees_with_the_graph_is_refused(exported: Exported, tmp_path: Path) -> None:
    path = _edit(_copy(exported, tmp_path), _set_prop("imu_anon.window", "64"))
    with pytest.raises(ModelCardError, match="has 128 samples but the card says window 64"):
        Anonymiser.open(path)


def test_a_graph_with_a_wrongly_named_input_is_refused(exported: Exported, tmp_path: Path) -> None:
    path = _edit(_copy(exported, tmp_path), _rename_input)
    with pytest.raises(ModelCardError, match="exactly one input named 'imu', it has \\['x'\\]"):
        Anonymiser.open(path)
    assert "input named 'imu'" in _inspect_error(path)


def test_tampered_weights_fail_the_sidecar_check(exported: Exported, tmp_path: Path) -> None:
    def nudge(model: onnx.ModelProto) -> None:
        init = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims)
        values = numpy_helper.to_array(init).copy()
        values.flat[0] += np.float32(0.5)
        init.CopyFrom(numpy_helper.from_array(values, init.name))

    path = _edit(_copy(exported, tmp_path), nudge, resign=False)
    with pytest.raises(IntegrityError, match="does not match broken.onnx.sha256"):
        Anonymiser.open(path)
    assert "the file is corrupt or was replaced" in _inspect_error(path)


def test_a_truncated_file_is_refused_before_and_after_resigning(exported: Exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError):
        Anonymiser.open(path)
    write_sidecar(path)
    with pytest.raises(ModelFileError, match="onnxruntime cannot load it"):
        Anonymiser.open(path)
    assert "not an ONNX model or is truncated" in _inspect_error(path)


def test_a_file_without_its_sidecar_is_refused(exported: Exported, tmp_path: Path) -> None:
    path = tmp_path / "alone.onnx"
    shutil.copy(exported.fp32, path)
    with pytest.raises(IntegrityError, match="no alone.onnx.sha256 beside it"):
        Anonymiser.open(path)


def test_export_refuses_a_missing_run_a_bad_name_and_too_few_parity_windows(tmp_path: Path, tmp_path_factory) -> None:
    proc = run_cli("export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx"), "--no-evaluate", timeout=120)
    assert proc.returncode == 1 and "no such run directory" in proc.stderr and "Traceback" not in proc.stderr
    run_dir = tiny_run_dir(tmp_path_factory)
    proc = run_cli("export", str(run_dir), "--out", str(tmp_path / "m.bin"), "--no-evaluate", timeout=120)
    assert proc.returncode == 1 and "must end in .onnx" in proc.stderr
    with pytest.raises(ExportError, match="parity needs at least 1000 windows, got 10"):
        ExportOptions(parity_windows=10)
    assert not (tmp_path / "m.bin").exists() and not (tmp_path / "m.onnx").exists()
