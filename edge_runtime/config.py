"""The gateway's configuration: defaults < TOML file < command-line flags.

One frozen dataclass per concern; each constructor gets only its own section. Every file key
is also a flag, named ``--SECTION-KEY`` (``streams.max_devices`` is ``--streams-max-devices``),
plus the short ``--model``, ``--source`` and ``--sink``. An unknown section or key is an error
that suggests the closest valid one. Window, hop, rate and channels are not configurable:
they come from the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge_runtime.anonymiser import InferenceSettings
from edge_runtime.errors import ConfigError
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.sinks import PublishSettings
from edge_runtime.streams import StreamSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    path: str = ""
    verify: bool = True  # check the .sha256 sidecar before loading

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("no model: pass --model FILE.onnx or set [model] path in the config file")


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    sources: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ("stdout:",)
    max_batch: int = 32  # windows per inference call, across devices
    max_wait_ms: float = 20.0  # latency budget: a ready window waits at most this long for others
    inbox_max: int = 4096  # chunks waiting between source threads and the pipeline

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("no source: pass --source URL (e.g. serial:///dev/ttyUSB0, mqtt://127.0.0.1/imu/+/raw) "
                              "or set [pipeline] sources")
        if not self.sinks:
            raise ConfigError("no sink: pass --sink URL (e.g. mqtt://127.0.0.1/imu/anon/{stream}, "
                              "file:out.jsonl, stdout:)")
        if not (isinstance(self.max_batch, int) and self.max_batch > 0):
            raise ConfigError(f"pipeline.max_batch must be a positive integer, got {self.max_batch!r}")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"pipeline.max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not (isinstance(self.inbox_max, int) and self.inbox_max > 0):
            raise ConfigError(f"pipeline.inbox_max must be a positive integer, got {self.inbox_max!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacySettings:
    secret_file: str = "~/.local/share/imu-anon/pseudonym.key"  # created (0600) when missing
    rotation_s: float = 0.0  # 0: a device keeps its pseudonym; 86400: a new one every UTC day

    def __post_init__(self) -> None:
        if not self.secret_file:
            raise ConfigError("privacy.secret_file must name a file for the pseudonym key")
        if not self.rotation_s >= 0:
            raise ConfigError(f"privacy.rotation_s must be >= 0, got {self.rotation_s!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    interval_s: float = 60.0  # the periodic stats log line; 0 turns it off
    prometheus_port: int = 0  # 0: no endpoint
    prometheus_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not (isinstance(self.prometheus_port, int) and 0 <= self.prometheus_port < 65536):
            raise ConfigError(f"metrics.prometheus_port must be 0..65535, got {self.prometheus_port!r}")
        if not self.interval_s >= 0:
            raise ConfigError(f"metrics.interval_s must be >= 0, got {self.interval_s!r}")


SECTIONS: dict[str, type] = {
    "model": ModelSettings, "inference": InferenceSettings, "pipeline": PipelineSettings, "streams": StreamSettings,
    "publish": PublishSettings, "mqtt": MqttSettings, "privacy": PrivacySettings, "metrics": MetricsSettings,
}
ALIASES = {"model": "model.path", "source": "pipeline.sources", "sink": "pipeline.sinks"}


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    model: ModelSettings
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    pipeline: PipelineSettings
    streams: StreamSettings = field(default_factory=StreamSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"


def _coerce(where: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _merge(layers: list[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown section [{section}]{_suggest(section, list(SECTIONS))}")
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
            kinds = _fields(SECTIONS[section])
            for key, value in values.items():
                if key not in kinds:
                    raise ConfigError(f"unknown key {section}.{key}{_suggest(key, list(kinds))}")
                merged.setdefault(section, {})[key] = _coerce(f"{section}.{key}", value, kinds[key])
    return merged


def read_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def build(file_values: Mapping[str, Any] | None = None,
          overrides: Mapping[str, Mapping[str, Any]] | None = None) -> GatewayConfig:
    """defaults < ``file_values`` (parsed TOML) < ``overrides`` ({section: {key: value}})."""
    merged = _merge([file_values or {}, overrides or {}])
    sections = {name: cls(**merged.get(name, {})) for name, cls in SECTIONS.items()}
    return GatewayConfig(**sections)


def add_flags(parser: argparse.ArgumentParser, skip: set[str] = frozenset()) -> None:
    """``--SECTION-KEY`` for every key (dest ``SECTION.KEY``), left unset unless given."""
    for alias, dest in ALIASES.items():
        if alias in skip:
            continue
        many = dest.startswith("pipeline.")
        parser.add_argument(f"--{alias}", dest=dest, action="append" if many else "store", default=None,
                            metavar="URL" if many else "FILE.onnx",
                            help=f"{dest} of the configuration file"
                            + (" (repeatable; replaces the file's list)" if many else ""))
    group = parser.add_argument_group("configuration keys (each also settable in the TOML file)")
    for section, cls in SECTIONS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, kind in _fields(cls).items():
            dest = f"{section}.{key}"
            if dest in ALIASES.values():
                continue
            flag = f"--{section}-{key}".replace("_", "-")
            default = defaults[key]
            shown = "" if default is dataclasses.MISSING else f"{section}.{key}, default {default!r}"
            if kind is bool:
                group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=shown)
            elif typing.get_origin(kind) is tuple:
                group.add_argument(flag, dest=dest, action="append", default=None, metavar="VALUE",
                                   help=shown + " (repeatable)")
            else:
                group.add_argument(flag, dest=dest, default=None, metavar=kind.__name__.upper(), help=shown)


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, key = dest.split(".", 1)
            out.setdefault(section, {})[key] = value
    return out


def example() -> str:
    """Every key with its default, as a TOML file (``imu-anon run --print-config``)."""
    lines = ["# imu-anon gateway configuration; every key is optional except model.path and pipeline.sources."]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
            if isinstance(default, bool):
                text = "true" if default else "false"
            elif isinstance(default, (int, float)):
                text = repr(default)
            elif isinstance(default, tuple):
                text = "[" + ", ".join(f'"{v}"' for v in default) + "]"
            else:
                text = f'"{default}"'
            lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"
