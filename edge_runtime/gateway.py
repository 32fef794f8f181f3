"""Assembling a pipeline from a configuration: the one place ``run`` and ``replay`` share.

The model is opened first (window, hop, rate and channels come from its card), then the
pseudonym key, the sinks (ready before any data flows) and the sources. Every sink and source
is made, and checked against the others (two MQTT connections may not share a client id on one
broker: :func:`~edge_runtime.mqtt_link.check_client_ids`), before any of them connects.
Leaving the context stops the sources, then flushes and closes the sinks.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

from edge_runtime import mqtt_link, payload
from edge_runtime.anonymiser import Anonymiser
from edge_runtime.config import GatewayConfig
from edge_runtime.decode import Decoders, origin_bound
from edge_runtime.metrics import Metrics, MetricsServer, PeriodicLog
from edge_runtime.pipeline import Pipeline
from edge_runtime.pseudonym import Pseudonymiser, load_or_create_secret
from edge_runtime.sinks import open_sink
from edge_runtime.sources import SourceContext, open_source
from edge_runtime.stitching import Stitcher
from edge_runtime.streams import StreamTable


@contextmanager
def open_gateway(config: GatewayConfig, *, speed: str = "1") -> Iterator[Pipeline]:
    """A ready pipeline for ``config``; ``speed`` paces recordings that do not set their own."""
    metrics = Metrics()
    model = Anonymiser.open(config.model.path, config.inference, verify=config.model.verify)
    card = model.card
    pseudonym = Pseudonymiser(load_or_create_secret(config.privacy.secret_file), config.privacy.rotation_s)
    publish = config.publish

    def status(state: str, fmt: str, topic: str) -> bytes:
        return payload.status(state, gateway=publish.gateway, model=model.sha256[:12], card=card, fmt=fmt,
                              stitch=publish.stitch, topic=topic)

    ctx = SourceContext(model_rate_hz=card.sample_rate_hz, speed=speed, mqtt=config.mqtt, metrics=metrics)
    stitcher = Stitcher(publish.stitch, card.window, card.hop)
    sinks = [open_sink(url, publish=publish, mqtt=config.mqtt, metrics=metrics, status=status)
             for url in config.pipeline.sinks]
    sources = [open_source(url, ctx) for url in config.pipeline.sources]
    named = zip((*config.pipeline.sinks, *config.pipeline.sources), (*sinks, *sources))
    mqtt_link.check_client_ids([(url, part.settings) for url, part in named
                                if isinstance(getattr(part, "settings", None), mqtt_link.MqttSettings)])
    with ExitStack() as stack:
        if config.metrics.prometheus_port:
            stack.enter_context(MetricsServer(metrics, config.metrics.prometheus_port, config.metrics.prometheus_host))
        for part in (*sinks, *sources):
            stack.enter_context(part)
        shard = config.streams.shard_of()
        yield Pipeline(
            anonymiser=model, sources=sources, sinks=sinks,
            streams=StreamTable(card.window, card.hop, card.sample_rate_hz, config.streams, metrics, pseudonym),
            decoders=Decoders(metrics, pseudonym, origin_bound(config.streams.max_devices, shard[1] if shard else 1)),
            stitcher=stitcher, metrics=metrics, settings=config.pipeline,
            periodic=PeriodicLog(metrics, config.metrics.interval_s),
        )
