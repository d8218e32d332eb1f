"""One role: render the gate's answer (allow, deny, pending or error) for a reader.

The answer is the JSON the gate sends (``POST /v1/gate``) or ``supplychain scan`` prints; it is
read defensively into a :class:`Report` (a server answer is untrusted input to the CLI), and each
format renders that. Renderers only format: the decision and the exit code are the answer's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Renderer", "Report", "ReportFinding", "read_answer"]


@dataclass(frozen=True)
class ReportFinding:
    """One vulnerability of one package of one image."""

    id: str
    """Advisory id."""
    package: str
    """Affected package."""
    installed: str
    """Installed version."""
    fixed: str | None
    """First fixed version(s), if any."""
    severity: str
    """UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL."""
    digest: str | None
    """Digest of the image manifest the package is in."""
    platform: str | None
    """Platform of that image inside an index, if stated."""
    title: str | None
    """Advisory title, if known."""


@dataclass(frozen=True)
class Report:
    """The gate's answer, as the renderers see it."""

    decision: str
    """allow, deny, pending or error."""
    image: str
    """The reference asked about."""
    digest: str | None
    """The digest the tag resolved to."""
    pinned: str | None
    """``registry/repository@digest`` to deploy."""
    reasons: tuple[str, ...]
    """Why, as the policy wrote it."""
    policy: str | None
    """Policy name."""
    policy_digest: str | None
    """SHA-256 of the policy."""
    error: str | None
    """Why there is no decision (unreachable server, registry error…)."""
    findings: tuple[ReportFinding, ...]
    """Vulnerabilities of the image(s) decided on."""
    answer: Mapping[str, Any]
    """The answer as received."""

    @property
    def exit_code(self) -> int:
        """0 allow, 1 deny, 2 anything else."""
        return {"allow": 0, "deny": 1}.get(self.decision, 2)


def _text(value: object, default: str | None = None) -> str | None:
    return value if isinstance(value, str) else default


def _finding(item: object) -> ReportFinding | None:
    if not isinstance(item, dict):
        return None
    vuln, package = _text(item.get("id")), _text(item.get("package"))
    if not vuln or not package:
        return None
    return ReportFinding(
        vuln,
        package,
        _text(item.get("installed"), "") or "",
        _text(item.get("fixed")),
        (_text(item.get("severity"), "UNKNOWN") or "UNKNOWN").upper(),
        _text(item.get("digest")) or _text(item.get("image")),
        _text(item.get("platform")),
        _text(item.get("title")),
    )


def read_answer(answer: Mapping[str, Any], image: str = "") -> Report:
    """The :class:`Report` of a JSON answer; what is missing or malformed is left out."""
    policy = answer.get("policy")
    policy = policy if isinstance(policy, dict) else {}
    reasons = answer.get("reasons")
    findings = answer.get("findings")
    decision = _text(answer.get("decision"), "error") or "error"
    return Report(
        decision=decision if decision in ("allow", "deny", "pending") else "error",
        image=_text(answer.get("image"), image) or image,
        digest=_text(answer.get("digest")),
        pinned=_text(answer.get("pinned")),
        reasons=tuple(r for r in reasons if isinstance(r, str))
        if isinstance(reasons, list)
        else (),
        policy=_text(policy.get("name")),
        policy_digest=_text(policy.get("digest")),
        error=_text(answer.get("error")),
        findings=tuple(f for f in map(_finding, findings) if f is not None)
        if isinstance(findings, list)
        else (),
        answer=answer,
    )


class Renderer(ABC):
    """Renders a :class:`Report` in one format."""

    name: str
    """The ``--output`` value."""

    @abstractmethod
    def render(self, report: Report) -> str:
        """The document (text, JSON or XML), ending with a newline."""
