"""``/v1/tokens``: the admin role lists, creates and revokes API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from supplychain.access.tokens import ROLES, TokenError, TokenStore

__all__ = ["tokens_router"]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class TokenRequest(BaseModel):
    """Body of ``POST /v1/tokens``."""

    name: str = Field(pattern=NAME, description="unique name, the actor in the audit log")
    role: str = Field(pattern=f"^({'|'.join(ROLES)})$")
    source: str | None = Field(default=None, max_length=32, description="webhook tokens only")
    expires_at: datetime | None = Field(default=None, description="ISO 8601 with a time zone")


def _actor(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return f"token:{principal.name}" if principal is not None else "api"


def tokens_router(tokens: TokenStore) -> APIRouter:
    """The token administration routes on ``tokens``."""
    router = APIRouter()

    @router.get("/v1/tokens")
    def list_tokens() -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "role": t.role,
                "source": t.source,
                "created_at": t.created_at.isoformat(),
                "created_by": t.created_by,
                "expires_at": t.expires_at and t.expires_at.isoformat(),
                "revoked_at": t.revoked_at and t.revoked_at.isoformat(),
                "last_used_at": t.last_used_at and t.last_used_at.isoformat(),
            }
            for t in tokens.list()
        ]

    @router.post("/v1/tokens", status_code=201)
    async def create_token(body: TokenRequest, request: Request) -> dict[str, str]:
        if body.expires_at is not None and body.expires_at.tzinfo is None:
            raise HTTPException(400, "expires_at needs a time zone")
        try:
            token = await run_in_threadpool(
                lambda: tokens.create(
                    body.name,
                    body.role,
                    actor=_actor(request),
                    source=body.source,
                    expires_at=body.expires_at,
                )
            )
        except TokenError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"name": body.name, "role": body.role, "token": token}

    @router.delete("/v1/tokens/{name}", status_code=204)
    def revoke_token(request: Request, name: str = Path(pattern=NAME)) -> None:
        try:
            tokens.revoke(name, actor=_actor(request))
        except TokenError as exc:
            raise HTTPException(404, str(exc)) from None

    return router
