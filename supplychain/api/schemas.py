"""Shapes of the API's bodies and answers, for validation and the OpenAPI description
(:mod:`supplychain.api.openapi`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from registry_hooks.grammar import GrammarError, check_text
from supplychain.api.waits import MAX_WAIT

__all__ = [
    "PLATFORM",
    "AffectedPage",
    "DecisionAnswer",
    "ErrorAnswer",
    "EventPage",
    "GateRequest",
    "Kind",
]

Kind = Literal["attestation", "gate", "sbom", "scan", "signature", "verdict", "vex", "waiver"]
"""Kinds of history event (:data:`supplychain.history.events.KINDS`)."""


_PART = r"[A-Za-z0-9._-]{1,64}"
PLATFORM = re.compile(rf"{_PART}/{_PART}(?:/{_PART})?", re.ASCII)
"""``os/arch[/variant]``, as index entries and image configs state it."""


class GateRequest(BaseModel):
    """Body of ``POST /v1/gate``."""

    image: str = Field(max_length=1024, description="host/repo:tag or host/repo@sha256:…")
    wait: float | None = Field(
        default=None,
        ge=0,
        le=MAX_WAIT,
        allow_inf_nan=False,
        description="seconds to wait while pending (default: SUPPLYCHAIN_GATE_WAIT_SECONDS)",
    )
    platform: str | None = Field(default=None, max_length=64, description="os/arch to decide on")

    @field_validator("image")
    @classmethod
    def _safe_image(cls, value: str) -> str:
        """No control or bidi character (the reference grammar is checked by the gate)."""
        try:
            return check_text(value, "image", 1024)
        except GrammarError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str | None) -> str | None:
        if value is not None and PLATFORM.fullmatch(value) is None:
            raise ValueError("platform must be os/arch[/variant] (letters, digits, . _ -)")
        return value


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
