"""``POST /v1/gate`` without FastAPI's per-request machinery, for a well-formed call.

A cluster asks the gate once per pod, so this one route's CPU per call matters; FastAPI's route
matching, dependency solving and body-field plumbing were about half of it. :class:`LeanGate`
(a :class:`~supplychain.api.lean.LeanRoute`) answers a well-formed gate call itself with the same
parts the FastAPI route uses, in the same order:

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
answer itself - a content type other than JSON, a body that is not JSON or not a valid gate
call - goes to the FastAPI app with the body replayed, so every error answer (422 problems, 400
for a body that cannot be parsed) is FastAPI's own, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Scope, Send

from supplychain.api.errors import GATE_PATH
from supplychain.api.lean import Authorize, LeanRoute, fail, replay
from supplychain.api.schemas import GateRequest

__all__ = ["LeanGate"]

Answer = Callable[[GateRequest], Awaitable[dict[str, Any]]]
"""The gate route's answer to a valid call, as JSON."""


class LeanGate(LeanRoute):
    """ASGI middleware answering well-formed ``POST /v1/gate`` calls; the rest goes to ``app``."""

    method = "POST"
    template = GATE_PATH

    def __init__(self, app: ASGIApp, authorize: Authorize, answer: Answer) -> None:
        super().__init__(app)
        self.authorize = authorize
        self.answer_call = answer

    def path_params(self, path: str) -> dict[str, str] | None:
        return {} if path == GATE_PATH else None

    async def answer(self, request: Request, send: Send) -> bool:
        scope = request.scope
        try:
            body = await request.body()
        except HTTPException as exc:  # the body limit (413): the route's answer
            await fail(request, exc, send)
            return True
        except Exception:  # what FastAPI answers when it cannot read a body
            await fail(request, HTTPException(400, "There was an error parsing the body"), send)
            return True
        call = _parse(scope, body)
        if call is None:  # FastAPI answers it, with its own error answers
            await self.app(scope, replay(body, request.receive), send)
            return False
        try:
            await self.authorize(request)
            content = await self.answer_call(call)
        except Exception as exc:
            await fail(request, exc, send)
            return True
        await JSONResponse(content)(scope, request.receive, send)
        return True


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
