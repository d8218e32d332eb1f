"""Counts HTTP requests by route template, so callers cannot mint metric labels.

The label is the matched route's template (``/v1/jobs/{job_id}``), never the raw path; every
path that matches no route shares the label ``unmatched``. Methods outside a fixed set share
``other``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supplychain.metrics import http_requests

__all__ = ["RouteMetrics"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class RouteMetrics:
    """ASGI middleware counting each HTTP request once, when its response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            method = scope.get("method", "")
            http_requests(
                route if isinstance(route, str) else UNMATCHED,
                method if method in METHODS else "other",
                status,
            ).inc()
