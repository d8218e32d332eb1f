"""Creates, lists and revokes waivers; every change is audited in the same transaction.

Shared by the API (``/v1/waivers``) and the CLI (``supplychain waiver``). Waivers are facts: the
one decision reads them (:mod:`supplychain.decide.waivers`) and compares their expiry with its
``now``, so nothing here schedules or deletes anything when a waiver expires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.decide.rules import RULE_NAMES
from supplychain.evidence import models
from supplychain.evidence.dbutil import audit

__all__ = ["JUSTIFICATIONS", "WaiverError", "WaiverRequest", "create", "listing", "revoke"]

JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)
"""OpenVEX ``not_affected`` justifications."""
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TEXT_LIMIT = 512


class WaiverError(ValueError):
    """A waiver request is invalid, or names no waiver."""


@dataclass(frozen=True)
class WaiverRequest:
    """What a waiver is made of."""

    owner: str
    """Who owns the risk."""
    reason: str
    """Why it is accepted."""
    ticket: str
    """The tracking ticket."""
    expires_at: datetime
    """When it stops applying (timezone-aware)."""
    digest: str | None = None
    """Scope: one image digest."""
    repository: str | None = None
    """Scope: a ``registry/repository`` glob pattern."""
    cve: str | None = None
    """What: an advisory id or alias."""
    package: str | None = None
    """What: a package name."""
    rule: str | None = None
    """What: a policy rule name."""
    justification: str | None = None
    """Optional OpenVEX justification."""


def _check(req: WaiverRequest, now: datetime) -> None:
    for name in ("owner", "reason", "ticket"):
        value = getattr(req, name)
        if not value or not value.strip() or len(value) > _TEXT_LIMIT:
            raise WaiverError(f"{name} is required (at most {_TEXT_LIMIT} characters)")
    if (req.digest is None) == (req.repository is None):
        raise WaiverError("give exactly one scope: digest or repository")
    if req.digest is not None and not _DIGEST.fullmatch(req.digest):
        raise WaiverError("digest must be sha256:<64 lowercase hex>")
    if req.repository is not None and not 0 < len(req.repository) <= _TEXT_LIMIT:
        raise WaiverError("repository pattern must be 1..512 characters")
    if sum(v is not None for v in (req.cve, req.package, req.rule)) != 1:
        raise WaiverError("give exactly one of cve, package or rule")
    if req.rule is not None and req.rule not in RULE_NAMES:
        raise WaiverError(f"rule must be one of {list(RULE_NAMES)}")
    if req.justification is not None and req.justification not in JUSTIFICATIONS:
        raise WaiverError(f"justification must be one of {list(JUSTIFICATIONS)}")
    if req.expires_at.tzinfo is None:
        raise WaiverError("expires_at needs a timezone (e.g. 2026-12-31T00:00:00Z)")
    if req.expires_at <= now:
        raise WaiverError("expires_at must be in the future")


def to_json(row: models.Waiver) -> dict[str, Any]:
    """A waiver as the API and CLI show it."""
    return {
        "id": row.id,
        "digest": row.digest,
        "repository": row.repository,
        "cve": row.cve,
        "package": row.package,
        "rule": row.rule,
        "owner": row.owner,
        "reason": row.reason,
        "ticket": row.ticket,
        "justification": row.justification,
        "expires_at": row.expires_at.isoformat(),
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revoked_by": row.revoked_by,
    }


def create(session: Session, req: WaiverRequest, actor: str, now: datetime) -> dict[str, Any]:
    """Record a waiver (audited); :class:`WaiverError` when ``req`` is invalid."""
    _check(req, now)
    row = models.Waiver(
        digest=req.digest, repository=req.repository, cve=req.cve, package=req.package,
        rule=req.rule, owner=req.owner, reason=req.reason, ticket=req.ticket,
        justification=req.justification, expires_at=req.expires_at.astimezone(UTC),
        created_at=now, created_by=actor,
    )  # fmt: skip
    session.add(row)
    session.flush()
    data = to_json(row)
    audit(session, actor, "waiver.create", req.digest or req.repository, waiver=data)
    return data


def listing(session: Session, *, revoked: bool = False) -> list[dict[str, Any]]:
    """Waivers, newest first (revoked ones only with ``revoked``)."""
    query = select(models.Waiver).order_by(models.Waiver.id.desc())
    if not revoked:
        query = query.where(models.Waiver.revoked_at.is_(None))
    return [to_json(w) for w in session.scalars(query)]


def revoke(session: Session, waiver_id: int, actor: str, now: datetime) -> dict[str, Any]:
    """Revoke a waiver (audited); :class:`WaiverError` when there is no such live waiver."""
    row = session.get(models.Waiver, waiver_id, with_for_update=True)  # one revoker wins
    if row is None or row.revoked_at is not None:
        raise WaiverError(f"no live waiver {waiver_id}")
    row.revoked_at, row.revoked_by = now, actor
    session.flush()
    data = to_json(row)
    audit(session, actor, "waiver.revoke", row.digest or row.repository, waiver=data)
    return data
