"""Prometheus metrics: what a platform engineer alerts on.

Conversions by result (a rising ``failed`` count means broken specs or nodes),
how long they take (GPU capacity planning), and how many models are Ready.
Kept in their own registry so tests and several operators in one process do
not collide with prometheus_client's global one.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

CONVERSIONS = Counter(
    "edgeopt_conversions",
    "Conversion Jobs that finished, by result (succeeded, failed).",
    ["result", "reason"],
    registry=REGISTRY,
)
CONVERSION_SECONDS = Histogram(
    "edgeopt_conversion_duration_seconds",
    "Wall time of conversion Jobs, from Job start to completion.",
    buckets=(10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf")),
    registry=REGISTRY,
)
MODELS_READY = Gauge("edgeopt_models_ready", "OptimizedModels whose phase is Ready.", registry=REGISTRY)
API_CALLS = Counter(
    "edgeopt_operator_api_requests",
    "Kubernetes API calls the operator's own code made (kopf's watches and patches not included).",
    ["verb", "resource"],
    registry=REGISTRY,
)

_ready: dict[tuple[str, str], bool] = {}
_ready_lock = threading.Lock()
MODELS_READY.set_function(lambda: sum(_ready.values()))


def observe_phase(namespace: str, name: str, phase: str | None) -> None:
    """Feed every OptimizedModel event here; ``phase=None`` means deleted."""
    with _ready_lock:
        if phase is None:
            _ready.pop((namespace, name), None)
        else:
            _ready[(namespace, name)] = phase == "Ready"


def record_conversion(result: str, reason: str, seconds: float | None) -> None:
    CONVERSIONS.labels(result=result, reason=reason).inc()
    if seconds is not None:
        CONVERSION_SECONDS.observe(seconds)


def record_api_call(verb: str, resource: str) -> None:
    API_CALLS.labels(verb=verb, resource=resource).inc()


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 = off)."""
    if port:
        start_http_server(port, registry=REGISTRY)
