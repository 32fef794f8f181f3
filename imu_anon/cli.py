"""The ``imu-anon`` entry point: a static table of sub-commands, imported only when chosen.

A sub-command lives in a module that exposes ``configure(parser)`` (adds its arguments;
imports nothing heavy) and ``run(args) -> int``. Keeping the table static means
``imu-anon run --help`` on a Raspberry Pi never imports torch, scipy or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass

from imu_anon import __version__
from imu_anon.errors import ImuAnonError


@dataclass(frozen=True, slots=True)
class Command:
    module: str
    summary: str
    extra: str | None = None  # the pip extra the command needs beyond the gateway install


COMMANDS: dict[str, Command] = {
    "train": Command("trainer.commands.train", "train an anonymiser on an IMU data set", "train"),
    "evaluate": Command(
        "trainer.commands.evaluate",
        "measure a checkpoint or ONNX file against attackers and baselines",
        "train",
    ),
    "export": Command("export.commands", "export a trained run to a self-describing ONNX file", "train"),
    "inspect": Command("edge_runtime.commands.inspect", "print an ONNX model's metadata and I/O signature"),
    "run": Command("edge_runtime.commands.run", "the gateway daemon: sources -> anonymiser -> sinks"),
    "replay": Command("edge_runtime.commands.replay", "stream a recording through the anonymiser"),
    "bench": Command("edge_runtime.commands.bench", "measure latency, throughput and footprint here"),
    "device": Command("firmware_bridge.commands", "emulate a wearable (device simulate ...)"),
}

_HEAVY = {"torch", "scipy", "matplotlib", "onnx", "onnxscript", "tqdm"}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<9} {cmd.summary}" for name, cmd in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="imu-anon",
        description="On-device anonymiser for IMU streams.",
        epilog=f"commands:\n{lines}\n\nRun 'imu-anon COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imu-anon {__version__}")
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def _load(name: str, command: Command):
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if command.extra and (exc.name or "").split(".")[0] in _HEAVY:
            raise SystemExit(
                f"imu-anon {name}: needs the '{command.extra}' extra ({exc.name} is missing). "
                f"Install it with: pip install 'imu-anon[{command.extra}]'"
            ) from None
        raise


def _configure_logging(verbosity: int) -> None:
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        _top_parser().parse_args(argv)
        _top_parser().print_help()
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _top_parser().parse_args([name])  # prints the valid choices and exits 2
    command = COMMANDS[name]
    module = _load(name, command)
    parser = argparse.ArgumentParser(prog=f"imu-anon {name}", description=command.summary)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging and tracebacks")
    module.configure(parser)
    args = parser.parse_args(rest)
    _configure_logging(args.verbose)
    try:
        return int(module.run(args) or 0)
    except ImuAnonError as exc:
        if args.verbose:
            raise
        print(f"imu-anon {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"imu-anon {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away ('imu-anon inspect M | head'): stop quietly, as a Unix tool
        # killed by SIGPIPE would, and keep Python from failing again when it flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
