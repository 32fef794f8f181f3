"""Counters and latency histograms, as a log line and as Prometheus text over HTTP."""

from __future__ import annotations

import urllib.request

from edge_runtime.metrics import Metrics, MetricsServer, PeriodicLog


def test_the_summary_line_shows_counters_changes_and_percentiles() -> None:
    metrics = Metrics()
    metrics.inc("frames_ok", 10)
    before = metrics.snapshot()
    metrics.inc("frames_ok", 5)
    metrics.inc("gaps")
    for ms in range(1, 101):
        metrics.observe("inference_seconds", ms / 1000)
    line = metrics.summary(before)
    assert "frames_ok=15(+5)" in line and "gaps=1(+1)" in line
    assert "inference_ms p50=50.50 p99=99.01" in line


def test_collectors_add_their_counters_to_every_snapshot() -> None:
    metrics = Metrics()
    metrics.inc("frames_corrupt", 1)
    metrics.add_collector(lambda: {"frames_corrupt": 2, "frames_ok": 7})
    assert metrics.snapshot() == {"frames_corrupt": 3, "frames_ok": 7}


def test_the_prometheus_text_has_counters_gauges_and_a_cumulative_histogram() -> None:
    metrics = Metrics()
    metrics.inc("windows_anonymised", 3)
    metrics.gauge("stream_rate_hz", 50.01, "s-ab")
    for seconds in (0.0004, 0.003, 0.003, 7.0):
        metrics.observe("inference_seconds", seconds)
    text = metrics.prometheus()
    assert "# TYPE imu_anon_windows_anonymised_total counter\nimu_anon_windows_anonymised_total 3" in text
    assert 'imu_anon_stream_rate_hz{stream="s-ab"} 50.01' in text
    assert 'imu_anon_inference_seconds_bucket{le="0.0005"} 1' in text
    assert 'imu_anon_inference_seconds_bucket{le="0.005"} 3' in text
    assert 'imu_anon_inference_seconds_bucket{le="5"} 3' in text
    assert 'imu_anon_inference_seconds_bucket{le="+Inf"} 4' in text
    assert "imu_anon_inference_seconds_count 4" in text


def test_the_endpoint_serves_metrics_on_loopback() -> None:
    metrics = Metrics()
    metrics.inc("frames_ok", 42)
    with MetricsServer(metrics, port=0) as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "imu_anon_frames_ok_total 42" in body


def test_the_periodic_line_is_logged_once_per_interval(caplog) -> None:
    import logging

    now = [0.0]
    metrics = Metrics()
    periodic = PeriodicLog(metrics, 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="edge_runtime.metrics"):
        for t in range(0, 181, 10):
            now[0] = float(t)
            metrics.inc("windows_anonymised")
            periodic.tick()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["stats:"] * 3
