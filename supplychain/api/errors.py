"""How failures become HTTP answers: always JSON with an ``error``, never a crash or a trace.

Gate answers also carry ``"decision": "error"`` so a caller reading only the decision fails
closed. Validation errors list where and what, never the input itself (it may be NaN, huge or
hostile). A database that cannot be reached or used (connection refused, database gone, locked,
pool exhausted) answers 503 with the reason; details go to the log. Other errors answer 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from supplychain.api.waits import TooManyWaiters
from supplychain.decide.gate import GateError

__all__ = ["GATE_PATH", "error_content", "handler_for", "install_error_handlers"]

log = logging.getLogger(__name__)

GATE_PATH = "/v1/gate"


def _error(
    request: Request,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    content = error_content(request.url.path, message, **extra)
    return JSONResponse(content, status_code=status, headers=headers)


def error_content(path: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON of an error answer to a request for ``path``."""
    content: dict[str, Any] = {"error": message, **extra}
    if path == GATE_PATH:
        content = {"decision": "error", **content}
    return content


def _where(loc: Any) -> str:
    parts = [str(part) for part in loc if part != "body"] if isinstance(loc, (list, tuple)) else []
    return ".".join(parts) or "body"


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        {"where": _where(error.get("loc")), "problem": str(error.get("msg", "invalid"))}
        for error in exc.errors()[:20]
    ]
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:3])
    return _error(request, 422, f"invalid request: {summary}", problems=problems)


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    return _error(request, exc.status_code, str(exc.detail), headers=exc.headers)


async def _gate(request: Request, exc: GateError) -> JSONResponse:
    return _error(request, exc.status, str(exc))


async def _busy(request: Request, exc: TooManyWaiters) -> JSONResponse:
    return _error(request, 429, str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _database(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc, extra={"path": request.url.path})
    return _error(request, 503, f"database unavailable ({type(exc).__name__}); failing closed")


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error", exc_info=exc, extra={"path": request.url.path})
    return _error(request, 500, f"internal error ({type(exc).__name__})")


HANDLERS: tuple[tuple[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]], ...] = (
    (RequestValidationError, _invalid),
    (HTTPException, _http),
    (GateError, _gate),
    (TooManyWaiters, _busy),
    (OperationalError, _database),
    (InterfaceError, _database),
    (PoolTimeoutError, _database),
    (Exception, _internal),
)
"""Each handler is called only for its exception type (Starlette looks it up by the type)."""
_BY_TYPE = dict(HANDLERS)


def handler_for(exc: Exception) -> Callable[[Request, Any], Awaitable[JSONResponse]]:
    """The handler of ``exc``: that of its nearest type in :data:`HANDLERS` (as Starlette)."""
    for cls in type(exc).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    return _internal  # not reached: every exception is an Exception


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure of ``app`` to a JSON answer."""
    for exc_type, handler in HANDLERS:
        app.add_exception_handler(exc_type, handler)
