"""Shapes of the API's answers, for the OpenAPI description (:mod:`supplychain.api.openapi`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["AffectedPage", "DecisionAnswer", "ErrorAnswer", "EventPage", "Kind"]

Kind = Literal["attestation", "gate", "sbom", "scan", "signature", "verdict", "vex", "waiver"]
"""Kinds of history event (:data:`supplychain.history.events.KINDS`)."""


class ErrorAnswer(BaseModel):
    """Every error answer of the API (:mod:`supplychain.api.errors`)."""

    error: str
    problems: list[dict[str, str]] | None = None
    decision: str | None = None


class EventOut(BaseModel):
    """One recorded fact or decision (:class:`supplychain.history.events.Event`)."""

    at: datetime
    kind: Kind
    id: int
    digest: str | None
    repository: str | None
    summary: str
    details: dict[str, Any]


class EventPage(BaseModel):
    """A page of events, oldest first; ``next_cursor`` null on the last page."""

    items: list[EventOut]
    next_cursor: str | None


class AffectedOut(BaseModel):
    """An image that held the package or advisory at the time asked about."""

    digest: str
    repository: str
    scan: int
    scanned_at: datetime
    packages: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    gate: dict[str, Any] | None
    passed_gate: bool


class AffectedPage(BaseModel):
    """A page of images, in the order they were first recorded."""

    at: datetime
    items: list[AffectedOut]
    next_cursor: str | None


class DecisionAnswer(BaseModel):
    """The answer for a digest at a time (:class:`supplychain.history.timetravel.Answer`)."""

    digest: str
    repository: str
    at: datetime
    decision: str
    reasons: list[str]
    policy: dict[str, str]
    scan: dict[str, Any] | None
    waivers: list[dict[str, Any]]
    vex: list[dict[str, Any]]
    recorded: dict[str, Any] | None
    notes: list[str]
