"""``POST /v1/gate`` without FastAPI's per-request machinery, for a well-formed call.

A cluster asks the gate once per pod, so this one route's CPU per call matters; FastAPI's route
matching (every route's pattern in turn), dependency solving and body-field plumbing were about
half of it. :class:`LeanGate` is an ASGI middleware placed inside the access log, body limit and
route metrics (so those see the call as before) that answers a well-formed gate call itself with
the same parts the FastAPI route uses, in the same order:

1. the body is read first (through :class:`~supplychain.api.bodylimit.BodyLimit`, so a body over
   the limit is a 413 before a byte too many is read, and before the token is looked at, as in
   FastAPI, which reads the body before it solves dependencies);
2. it is parsed with :func:`json.loads` and validated by the same pydantic model
   (:class:`GateRequest`) as FastAPI does it (python mode, on the parsed object);
3. the same role check (:func:`supplychain.access.rules.authorizer`: cached token HMAC, OIDC JWT
   for ``ci`` when configured, refusals audited) is called with the gate route as the request's
   route;
4. the same answer function and the same :class:`~starlette.responses.JSONResponse` rendering.

Failures of steps 3-4 are answered by the app's own handlers (:data:`supplychain.api.errors.
HANDLERS`, chosen by the exception's type as Starlette does). Anything this class does not
answer itself - another route or method, a content type other than JSON, a body that is not JSON
or not a valid gate call - goes to the FastAPI app with the body replayed, so every error answer
(422 problems, 400 for a body that cannot be parsed) is FastAPI's own, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supplychain.api.errors import GATE_PATH, handler_for
from supplychain.api.schemas import GateRequest

__all__ = ["LeanGate"]

Answer = Callable[[GateRequest], Awaitable[dict[str, Any]]]
"""The gate route's answer to a valid call, as JSON."""
Authorize = Callable[[Request], Awaitable[object]]
"""The app-wide role check; raises an HTTP 401/403 exception to refuse."""


class LeanGate:
    """ASGI middleware answering well-formed ``POST /v1/gate`` calls; the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, authorize: Authorize, answer: Answer) -> None:
        self.app = app
        self.authorize = authorize
        self.answer = answer
        self._route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != GATE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self._gate_route(scope)  # the role check, access log, metrics read it
        request = Request(scope, receive)
        try:
            body = await request.body()
        except HTTPException as exc:  # the body limit (413): the route's answer
            await _fail(request, exc, send)
            return
        except Exception:  # what FastAPI answers when it cannot read a body
            await _fail(request, HTTPException(400, "There was an error parsing the body"), send)
            return
        call = _parse(scope, body)
        if call is None:  # FastAPI answers it, with its own error answers
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            await self.authorize(request)
            content = await self.answer(call)
        except Exception as exc:
            await _fail(request, exc, send)
            return
        await JSONResponse(content)(scope, receive, send)

    def _gate_route(self, scope: Scope) -> BaseRoute:
        """The app's own ``POST /v1/gate`` route (its template names the call everywhere)."""
        if self._route is None:
            for route in scope["app"].routes:
                methods = getattr(route, "methods", None) or ()
                if getattr(route, "path", None) == GATE_PATH and "POST" in methods:
                    self._route = route
                    break
            else:
                raise RuntimeError(f"the app has no POST {GATE_PATH} route")
        return self._route


def _parse(scope: Scope, body: bytes) -> GateRequest | None:
    """The call, when the body is JSON (declared and parsed) and a valid gate call; else None."""
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json" or not body:
        return None
    try:
        return GateRequest.model_validate(json.loads(body))
    except (ValueError, RecursionError, ValidationError):  # FastAPI words these
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` giving ``body`` once, then the client's later messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _fail(request: Request, exc: Exception, send: Send) -> None:
    """Answer ``exc`` as the app's exception handlers do."""
    response = await handler_for(exc)(request, exc)
    await response(request.scope, request.receive, send)
