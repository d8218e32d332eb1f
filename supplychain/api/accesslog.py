"""Structured access log: one JSON line per HTTP request.

Fields: ``method``, ``path`` (the route's template, ``/v1/jobs/{job_id}``, so no identifier or
query string the client chose reaches the log), ``status``, ``duration_ms``. Headers are never
read: no ``Authorization`` value, token or signature can be logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["AccessLog"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("supplychain.access")


class AccessLog:
    """ASGI middleware logging each HTTP request once it is answered (or failed)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            log.info(
                "request",
                extra={
                    "method": str(scope.get("method", ""))[:16],
                    "path": template if isinstance(template, str) else "(no route)",
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
