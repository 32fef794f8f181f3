"""Loading and running a model: checked before the first sample, numbers as the graph says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_factory import build_model, card_for, onnx_model, reference_output  # noqa: F401 (onnx_model: a fixture)
from onnx import TensorProto, helper

from edge_runtime.anonymiser import Anonymiser, InferenceSettings
from edge_runtime.errors import ConfigError, IntegrityError, ModelCardError, ModelFileError
from edge_runtime.integrity import write_sidecar
from edge_runtime.signals import AnonymisedWindow, RawWindow

RNG = np.random.default_rng(7)


def raw_windows(n: int, window: int = 128) -> np.ndarray:
    x = RNG.normal(0, 0.5, (n, 6, window)).astype(np.float32)
    x[:, 2] += 1.0
    return x


def test_a_valid_model_opens_and_returns_what_its_graph_computes(onnx_model: Path) -> None:
    model = Anonymiser.open(onnx_model)
    assert model.card.window == 128 and model.card.hop == 64 and model.card.sample_rate_hz == 50.0
    assert model.card.output_channels == ("acc_mag", "gyro_mag")
    assert model.path == onnx_model
    x = raw_windows(5)
    out = model.anonymise(x)
    assert out.shape == (5, 2, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_output(x), rtol=1e-5, atol=1e-5)


def test_the_default_session_uses_one_thread_and_does_not_spin() -> None:
    opts = InferenceSettings().session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    spinning = InferenceSettings(spinning=True, intra_op_threads=2).session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert spinning.intra_op_num_threads == 2


def test_inference_settings_refuse_nonsense_with_the_valid_choices() -> None:
    with pytest.raises(ConfigError, match="disable, basic, extended, all"):
        InferenceSettings(graph_optimisation="max")
    with pytest.raises(ConfigError, match="intra_op_threads"):
        InferenceSettings(intra_op_threads=-1)


def test_a_model_that_does_not_match_its_sidecar_is_refused(onnx_model: Path) -> None:
    data = bytearray(onnx_model.read_bytes())
    data[-5] ^= 0xFF
    onnx_model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        Anonymiser.open(onnx_model)


def test_a_model_without_sidecar_is_refused_unless_verification_is_off(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.onnx", sidecar=False)
    with pytest.raises(IntegrityError, match="m.onnx.sha256"):
        Anonymiser.open(path)
    assert Anonymiser.open(path, verify=False).card.window == 128


def test_a_truncated_file_is_refused_as_not_loadable(onnx_model: Path) -> None:
    onnx_model.write_bytes(onnx_model.read_bytes()[:300])
    write_sidecar(onnx_model)
    with pytest.raises(ModelFileError, match="not an ONNX model or is truncated"):
        Anonymiser.open(onnx_model)


def test_a_text_file_is_refused_as_not_an_onnx_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    write_sidecar(path)
    with pytest.raises(ModelFileError, match="notes.onnx"):
        Anonymiser.open(path)


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        Anonymiser.open(tmp_path / "absent.onnx")


def test_a_model_without_card_is_refused_listing_the_missing_keys(tmp_path: Path) -> None:
    path = build_model(tmp_path / "bare.onnx", metadata={"author": "someone"})
    with pytest.raises(ModelCardError) as info:
        Anonymiser.open(path)
    assert "imu_anon.window" in str(info.value) and "imu_anon.sample_rate_hz" in str(info.value)


def test_a_card_with_bad_values_is_refused(tmp_path: Path) -> None:
    meta = card_for().to_metadata()
    meta["imu_anon.hop"] = json.dumps(500)
    path = build_model(tmp_path / "hop.onnx", metadata=meta)
    with pytest.raises(ModelCardError, match="hop 500 is larger than window 128"):
        Anonymiser.open(path)


def test_a_graph_with_other_input_names_is_refused(tmp_path: Path) -> None:
    path = build_model(tmp_path / "names.onnx", input_name="x", output_name="y")
    with pytest.raises(ModelCardError) as info:
        Anonymiser.open(path)
    assert "'imu'" in str(info.value) and "'anonymised'" in str(info.value)


def test_a_graph_whose_window_differs_from_the_card_is_refused(tmp_path: Path) -> None:
    path = build_model(tmp_path / "w.onnx", window=128, graph_window=100)
    with pytest.raises(ModelCardError, match="100 samples but the card says window 128"):
        Anonymiser.open(path)


def test_a_graph_with_a_fixed_batch_is_refused(tmp_path: Path) -> None:
    import onnx

    path = build_model(tmp_path / "fixed.onnx")
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, path)
    write_sidecar(path)
    with pytest.raises(ModelCardError, match="dynamic batch"):
        Anonymiser.open(path)


def test_a_model_in_metres_per_second_squared_gets_its_units(tmp_path: Path) -> None:
    model = Anonymiser.open(build_model(tmp_path / "si.onnx", acc_units="m/s^2"))
    assert model.card.input_units[0] == "m/s^2"
    x = raw_windows(3)  # in g, as the pipeline holds samples
    windows = [RawWindow(device_id="d", stream="s-1", segment=0, index=i, t0=0.0, rate_hz=50.0,
                         samples=x[i], ready_at=0.0) for i in range(3)]
    out, seconds = model.anonymise_windows(windows)
    assert seconds > 0 and all(isinstance(w, AnonymisedWindow) for w in out)
    np.testing.assert_allclose(np.stack([w.values for w in out]), reference_output(x), rtol=1e-4, atol=1e-5)


def test_anonymise_refuses_windows_of_the_wrong_shape(onnx_model: Path) -> None:
    model = Anonymiser.open(onnx_model)
    with pytest.raises(ValueError, match=r"\[N, 6, 128\]"):
        model.anonymise(np.zeros((2, 6, 100), np.float32))
    assert model.anonymise(np.zeros((0, 6, 128), np.float32)).shape == (0, 2, 128)


def test_the_anonymiser_takes_only_raw_windows(onnx_model: Path) -> None:
    model = Anonymiser.open(onnx_model)
    with pytest.raises(TypeError, match="RawWindow"):
        model.anonymise_windows([np.zeros((6, 128), np.float32)])


def test_an_int8_model_loads_and_stays_close_to_fp32(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = build_model(tmp_path / "fp32.onnx")
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    import onnx

    model = onnx.load(int8)
    meta = card_for(precision="int8").to_metadata()
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    assert any(n.op_type in ("ConvInteger", "DynamicQuantizeLinear") for n in model.graph.node)
    onnx.save(model, int8)
    write_sidecar(int8)
    quantised = Anonymiser.open(int8)
    assert quantised.card.precision == "int8"
    x = raw_windows(4)
    np.testing.assert_allclose(quantised.anonymise(x), reference_output(x), atol=0.05)


def test_a_model_that_cannot_run_is_refused_at_open(tmp_path: Path) -> None:
    import onnx

    path = build_model(tmp_path / "bad.onnx")
    model = onnx.load(path)
    # Reshape to a fixed size that only fits one window: loads, but the smoke run fails.
    shape = helper.make_tensor("bad_shape", TensorProto.INT64, [3], [1, 2, 64])
    model.graph.initializer.append(shape)
    out = model.graph.node[-1].output[0]
    model.graph.node[-1].output[0] = "pre"
    model.graph.node.append(helper.make_node("Reshape", ["pre", "bad_shape"], [out]))
    onnx.save(model, path)
    write_sidecar(path)
    with pytest.raises((ModelFileError, ModelCardError), match="bad.onnx"):
        Anonymiser.open(path)
