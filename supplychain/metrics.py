"""Prometheus metrics."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "supplychain_webhook_requests_total",
    "Webhook requests by source and status",
    ["source", "status"],
)
JOBS = Counter("supplychain_jobs_total", "Job attempts by outcome", ["outcome"])
GATE = Counter("supplychain_gate_decisions_total", "Gate answers by decision", ["decision"])
STAGE_SECONDS = Histogram(
    "supplychain_stage_seconds",
    "Wall time of each pipeline stage",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
GATE_SECONDS = Histogram(
    "supplychain_gate_seconds", "Gate answer latency", buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30)
)
HTTP_REQUESTS = Counter(
    "supplychain_http_requests_total",
    "HTTP requests by route template (unknown paths: one label), method and status",
    ["route", "method", "status"],
)
LEAN_ANSWERS = Counter(
    "supplychain_http_lean_answers_total",
    "Calls a route's lean handler answered itself (the route's other calls: FastAPI's route)",
    ["route"],
)
GATE_WAITING = Gauge("supplychain_gate_waiting", "Gate calls waiting on a pending image")
RECONCILE = Counter(
    "supplychain_reconcile_total",
    "Reconcile passes: digests queued (never seen before) and errors",
    ["outcome"],
)


@lru_cache(maxsize=1024)
def webhook_requests(source: str, status: int) -> Counter:
    """:data:`WEBHOOKS`' counter of a source label and status, looked up once (``labels()``
    checks its arguments and takes a lock on every call)."""
    return WEBHOOKS.labels(source=source, status=str(status))


@lru_cache(maxsize=4096)
def http_requests(route: str, method: str, status: int) -> Counter:
    """:data:`HTTP_REQUESTS`' counter of a route template, method and status, looked up once."""
    return HTTP_REQUESTS.labels(route=route, method=method, status=str(status))
