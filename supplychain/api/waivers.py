"""``/v1/waivers``: create (POST), list (GET) and revoke (DELETE) waivers, each change audited.

A waiver turns a deny into an allow, so writes need ``Authorization: Bearer <admin token>``
(compared in constant time) and are refused outright while no admin token is configured.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Path, Query
from pydantic import BaseModel, Field

from supplychain.decide.waiverstore import WaiverError, WaiverRequest, create, listing, revoke
from supplychain.evidence import models
from supplychain.service import Service

__all__ = ["waivers_router"]

MAX_WAIVER_ID = 2**31 - 1


class WaiverBody(BaseModel):
    """``POST /v1/waivers``: scope (digest or repository), what (cve, package or rule), and
    owner, reason, ticket and expiry, all required."""

    owner: str = Field(max_length=512)
    reason: str = Field(max_length=512)
    ticket: str = Field(max_length=512)
    expires_at: datetime
    digest: str | None = Field(default=None, max_length=71)
    repository: str | None = Field(default=None, max_length=512)
    cve: str | None = Field(default=None, max_length=128)
    package: str | None = Field(default=None, max_length=512)
    rule: str | None = Field(default=None, max_length=32)
    justification: str | None = Field(default=None, max_length=64)


def waivers_router(service: Service) -> APIRouter:
    """The waiver routes on ``service``'s database (writes: the admin role, see
    :mod:`supplychain.access.rules`)."""
    router = APIRouter()

    @router.post("/v1/waivers", status_code=201)
    def create_waiver(
        body: WaiverBody,
        actor: str = Header(default="api", max_length=255),
    ) -> dict[str, Any]:
        try:
            with service.db.session(write=True) as session:
                return create(session, WaiverRequest(**body.model_dump()), actor, models.utcnow())
        except WaiverError as exc:
            raise HTTPException(400, str(exc)) from None

    @router.get("/v1/waivers")
    def list_waivers(revoked: bool = Query(default=False)) -> list[dict[str, Any]]:
        with service.db.session() as session:
            return listing(session, revoked=revoked)

    @router.delete("/v1/waivers/{waiver_id}")
    def revoke_waiver(
        waiver_id: int = Path(ge=1, le=MAX_WAIVER_ID),
        actor: str = Header(default="api", max_length=255),
    ) -> dict[str, Any]:
        try:
            with service.db.session(write=True) as session:
                return revoke(session, waiver_id, actor, models.utcnow())
        except WaiverError as exc:
            raise HTTPException(404, str(exc)) from None

    return router
