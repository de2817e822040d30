"""Prometheus metrics of the service. With several workers (`--workers N`), `rec-pipeline serve` sets
PROMETHEUS_MULTIPROC_DIR, each worker writes its samples there and /metrics adds them up, whichever worker answers."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter("rec_requests_total", "HTTP requests answered", ["path", "status"])
LATENCY = Histogram(
    "rec_request_seconds", "Time from request to response, in the service", ["path"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENTS = Counter("rec_events_total", "Events posted", ["outcome"])  # accepted | duplicate
VERSION = Gauge("rec_model_version_info", "1 for the model version this worker serves", ["version"],
                multiprocess_mode="liveall")
_KNOWN_PATHS = {"/recommend", "/events", "/items", "/reload", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
_served: list[str] = []


def observe(path: str, status: int, seconds: float) -> None:
    path = path if path in _KNOWN_PATHS else "other"  # no label per unknown URL
    REQUESTS.labels(path, str(status)).inc()
    LATENCY.labels(path).observe(seconds)


def events_accepted(accepted: int, duplicates: int) -> None:
    EVENTS.labels("accepted").inc(accepted)
    EVENTS.labels("duplicate").inc(duplicates)


def set_version(version: str) -> None:
    if _served and _served[0] == version:
        return
    if _served:
        VERSION.remove(_served[0])
        _served.clear()
    VERSION.labels(version).set(1)
    _served.append(version)


def render() -> tuple[bytes, str]:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
