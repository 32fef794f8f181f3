"""``imu-anon run --config gateway.toml``: the gateway daemon (flags override the file).

SIGTERM or Ctrl-C stops the sources, anonymises what is pending, flushes every sink and
exits 0; systemd's ``stop`` is therefore lossless up to the sinks' flush timeout.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    from edge_runtime import config

    parser.add_argument("--config", metavar="FILE.toml", help="gateway configuration (flags override it)")
    parser.add_argument("--print-config", action="store_true",
                        help="print every key with its default as TOML, and exit")
    config.add_flags(parser)


def run(args: argparse.Namespace) -> int:
    from edge_runtime import config
    from edge_runtime.gateway import open_gateway

    if args.print_config:
        print(config.example(), end="")
        return 0
    cfg = config.build(config.read_file(args.config) if args.config else {}, config.flag_overrides(args))
    with open_gateway(cfg) as pipeline:
        with StopOnSignals(pipeline):
            summary = pipeline.run()
    log.info("stopped after %.1f s: %s", summary.elapsed_s, pipeline.metrics.summary())
    return 0


class StopOnSignals:
    """SIGTERM / SIGINT / SIGHUP ask the pipeline to stop; the old handlers come back on exit."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self._old: dict = {}

    def __enter__(self) -> "StopOnSignals":
        import signal

        def handler(signum, frame) -> None:
            log.info("%s: stopping (flushing what is pending)", signal.Signals(signum).name)
            self.pipeline.stop()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
