"""A route answered without FastAPI's per-request machinery: the common part of the lean routes.

FastAPI's route matching (every route's pattern in turn), dependency solving and body-field
plumbing cost more CPU than some whole answers. A :class:`LeanRoute` is an ASGI middleware
placed inside the access log, body limit and route metrics (so those see the call as before)
that answers the calls of one route (method and path) itself, with the same parts as the
FastAPI route; everything else goes on to the FastAPI app. Before a subclass answers, the
request's ``route`` is the app's own route, so the role check, access log and metrics name the
call by its template as for any other call. A subclass answers a failure as the app's exception
handlers do (:func:`fail`), and can hand a call it does not answer itself on to FastAPI with the
body already read (:func:`replay`), so every other answer is FastAPI's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supplychain.api.errors import handler_for
from supplychain.metrics import LEAN_ANSWERS

__all__ = ["Authorize", "LeanRoute", "fail", "replay"]

Authorize = Callable[[Request], Awaitable[object]]
"""The app-wide role check (:func:`supplychain.access.rules.authorizer`); raises an HTTP 401/403
exception to refuse."""


class LeanRoute(ABC):
    """ASGI middleware answering the calls of one route of the app; the rest goes to ``app``."""

    method: str
    """The route's method."""
    template: str
    """The route's path template, as the app declares it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: BaseRoute | None = None

    @abstractmethod
    def path_params(self, path: str) -> dict[str, str] | None:
        """The parameters of ``path`` when it is this route's (as the app matches it); else None."""

    @abstractmethod
    async def answer(self, request: Request, send: Send) -> bool:
        """Answer a call of this route (``request.scope["route"]`` is the app's route): True,
        or False when it was handed on to the FastAPI app (:func:`replay`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = (
            self.path_params(scope["path"])
            if scope["type"] == "http"
            and scope["method"] == self.method
            and not scope.get("root_path")  # mounted under a prefix: the router strips it
            else None
        )
        if params is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._own_route(scope)  # the role check, access log, metrics read it
        scope["path_params"] = params
        if await self.answer(Request(scope, receive), send):
            LEAN_ANSWERS.labels(route=self.template).inc()

    def _own_route(self, scope: Scope) -> BaseRoute:
        """The app's own route of this method and template."""
        if self._route is None:
            for route in scope["app"].routes:
                methods = getattr(route, "methods", None) or ()
                if getattr(route, "path", None) == self.template and self.method in methods:
                    self._route = route
                    break
            else:
                raise RuntimeError(f"the app has no {self.method} {self.template} route")
        return self._route


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` giving ``body`` once, then the client's later messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def fail(request: Request, exc: Exception, send: Send) -> None:
    """Answer ``exc`` as the app's exception handlers do."""
    response = await handler_for(exc)(request, exc)
    await response(request.scope, request.receive, send)
