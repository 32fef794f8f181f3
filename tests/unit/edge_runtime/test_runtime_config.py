"""Configuration: defaults < file < flags, every key a flag, unknown keys suggest the right one."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from edge_runtime import config
from edge_runtime.errors import ConfigError

MINIMAL = {"model": {"path": "m.onnx"}, "pipeline": {"sources": ["serial:///dev/ttyUSB0"]}}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    return parser.parse_args(list(argv))


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[model]\npath = "m.onnx"\n[pipeline]\nsources = ["serial:///dev/ttyUSB0"]\n'
                    '[streams]\nmax_devices = 8\nsilence_s = 3\n[publish]\nqos = 0\n')
    args = parse("--streams-max-devices", "4", "--sink", "file:/tmp/x.jsonl", "--no-model-verify")
    cfg = config.build(config.read_file(path), config.flag_overrides(args))
    assert cfg.streams.max_devices == 4  # flag
    assert cfg.streams.silence_s == 3.0  # file (an integer in TOML, a float key)
    assert cfg.publish.qos == 0  # file
    assert cfg.streams.gap_tolerance_samples == 2.0  # default
    assert cfg.pipeline.sinks == ("file:/tmp/x.jsonl",) and cfg.model.verify is False


def test_every_file_key_is_also_a_flag() -> None:
    flags = {a.dest for a in argparse.ArgumentParser()._actions}
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    dests = {a.dest for a in parser._actions} - flags
    for section, cls in config.SECTIONS.items():
        for key in config._fields(cls):
            assert f"{section}.{key}" in dests


def test_an_unknown_key_suggests_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key streams.max_device \(did you mean 'max_devices'\?\)"):
        config.build({**MINIMAL, "streams": {"max_device": 3}})
    with pytest.raises(ConfigError, match=r"unknown section \[stream\] \(did you mean 'streams'\?\)"):
        config.build({**MINIMAL, "stream": {}})


def test_wrong_types_and_values_are_errors_that_name_the_key() -> None:
    with pytest.raises(ConfigError, match="streams.silence_s must be a number"):
        config.build({**MINIMAL, "streams": {"silence_s": "soon"}})
    with pytest.raises(ConfigError, match="publish.qos must be 0, 1 or 2"):
        config.build({**MINIMAL, "publish": {"qos": 3}})
    with pytest.raises(ConfigError, match="no source"):
        config.build({"model": {"path": "m.onnx"}})
    with pytest.raises(ConfigError, match="no model"):
        config.build({"pipeline": {"sources": ["loop:x"]}})


def test_a_broken_toml_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[model\npath = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.read_file(path)
    with pytest.raises(ConfigError, match="no such configuration file"):
        config.read_file(tmp_path / "absent.toml")


def test_the_printed_example_is_valid_toml_with_every_default() -> None:
    values = tomllib.loads(config.example())
    values["model"]["path"] = "m.onnx"
    values["pipeline"]["sources"] = ["loop:x"]
    cfg = config.build(values)
    assert cfg.pipeline.max_batch == 32 and cfg.inference.intra_op_threads == 1 and cfg.mqtt.keepalive_s == 30


def test_the_shipped_gateway_example_is_a_valid_configuration() -> None:
    example = Path(__file__).resolve().parents[3] / "edge_runtime" / "deploy" / "gateway.toml"
    cfg = config.build(config.read_file(example))
    assert cfg.model.path.endswith(".onnx") and cfg.pipeline.sources and cfg.pipeline.sinks
