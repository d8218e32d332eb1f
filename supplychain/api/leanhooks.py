"""``POST /v1/hooks/{source}``: the webhook route's answer, and a path to it without FastAPI.

Every push of every registry arrives here, so this route's CPU per request bounds the intake's
rate; FastAPI's route matching, dependency solving and exception plumbing were a large part of
it. :class:`Hooks` is the route's answer, given by the FastAPI route and by :class:`LeanHooks`
(a :class:`~supplychain.api.lean.LeanRoute`), which answers every call of the route itself with
the same steps in the same order as FastAPI:

1. the app-wide role check (:func:`supplychain.access.rules.authorizer`), which lets the call
   through: the route's rule is :data:`~supplychain.access.rules.BY_SOURCE`;
2. the body is read through :class:`~supplychain.api.bodylimit.BodyLimit` (413, counted in
   ``supplychain_webhook_requests_total``, before a byte too many is read);
3. the intake authenticates the request by the source's own key, signature or ``webhook`` token
   (refusals audited), reads it with the source's adapter and stores it
   (:class:`~supplychain.intake.webhooks.Intake`);
4. the answer is counted and rendered as JSON.

Failures are answered by the app's own exception handlers. The route reads no body model, so
there is nothing for FastAPI to answer differently: a path the route does not match (no source,
or a ``/`` in it) is the only call left to FastAPI.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Scope, Send

from supplychain.api.bodylimit import BodyTooLarge
from supplychain.api.lean import Authorize, LeanRoute, fail
from supplychain.intake.webhooks import HOOKS_ROUTE, Intake, IntakeResult
from supplychain.metrics import webhook_requests

__all__ = ["HOOKS_PATH", "Hooks", "LeanHooks"]

HOOKS_PATH = HOOKS_ROUTE.removesuffix("{source}")
"""The prefix of every webhook path."""


class Hooks:
    """The webhook route's answer to a request for ``/v1/hooks/<source>``."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    async def respond(self, source: str, request: Request) -> JSONResponse:
        """The answer; raises what the app's exception handlers answer (413, database down)."""
        intake = self.intake
        label = source if source in intake.sources.adapters else "unknown"
        try:
            body = await request.body()
        except BodyTooLarge as exc:
            webhook_requests(label, exc.status_code).inc()
            raise
        scope = request.scope
        headers = _headers(scope)
        token = _query_token(scope)
        if token and "authorization" not in headers and intake.sources.secret_in_query(source):
            headers["authorization"] = f"Bearer {token}"
        client = scope.get("client")
        remote = client[0] if client else None
        read = intake.read_inline(source, headers, body, remote)
        if read is None:
            read = await run_in_threadpool(intake.read, source, headers, body, remote)
        result = read if isinstance(read, IntakeResult) else await intake.receive_batched(read)
        webhook_requests(label, result.status).inc()
        content: dict[str, Any] = {"message": result.message}
        if result.delivery_id is not None:
            content.update(
                delivery=result.delivery_id,
                accepted=result.accepted,
                duplicates=result.duplicates,
                deleted=result.deleted,
                refused=list(result.refused),
                ignored=list(result.ignored),
            )
        if result.status >= 400:
            content["error"] = result.message
        return JSONResponse(content, status_code=result.status)


class LeanHooks(LeanRoute):
    """ASGI middleware answering ``POST /v1/hooks/{source}``; the rest goes to ``app``."""

    method = "POST"
    template = HOOKS_ROUTE

    def __init__(self, app: ASGIApp, authorize: Authorize, hooks: Hooks) -> None:
        super().__init__(app)
        self.authorize = authorize
        self.hooks = hooks

    def path_params(self, path: str) -> dict[str, str] | None:
        # as the route's pattern ^/v1/hooks/(?P<source>[^/]+)$ matches it
        if not path.startswith(HOOKS_PATH):
            return None
        source = path[len(HOOKS_PATH) :]
        return {"source": source} if source and "/" not in source else None

    async def answer(self, request: Request, send: Send) -> bool:
        try:
            await self.authorize(request)
            response = await self.hooks.respond(request.scope["path_params"]["source"], request)
        except Exception as exc:
            await fail(request, exc, send)
            return True
        await response(request.scope, request.receive, send)
        return True


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones), as Starlette
    decodes them."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _query_token(scope: Scope) -> str | None:
    """The ``token`` query parameter (the last one), as Starlette parses it."""
    query: bytes = scope["query_string"]
    return QueryParams(query).get("token") if query else None
