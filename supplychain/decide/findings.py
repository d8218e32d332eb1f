"""The findings behind a verdict, structured for reports (SARIF, JUnit, tables).

Computed from the same loaded facts the one decision read (:mod:`supplychain.decide.decision`),
VEX matched the same way; findings a VEX statement marks ``not_affected`` are left out, as the
policy leaves them out. This module never decides: it only lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from supplychain.decide.decision import ImageFacts, IndexFacts
from supplychain.decide.policy import NOT_AFFECTED, SEVERITY_ORDER

__all__ = ["MAX_FINDINGS", "GateFinding", "findings_of"]

MAX_FINDINGS = 1000
"""Findings an answer lists at most (the most severe first)."""


@dataclass(frozen=True)
class GateFinding:
    """One vulnerability in one package of one image the verdict covers."""

    id: str
    """Advisory id (``CVE-…``, ``GHSA-…``)."""
    package: str
    """Affected package."""
    installed: str
    """Installed version."""
    fixed: str | None
    """First fixed version(s), if any."""
    severity: str
    """UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL."""
    digest: str
    """Digest of the image manifest the package is in."""
    platform: str | None = None
    """The platform of that image inside an index, if the answer is about an index."""
    purl: str | None = None
    """Package URL."""
    title: str | None = None
    """Advisory title."""

    def to_json(self) -> dict[str, str | None]:
        """The API's JSON form."""
        return {
            "id": self.id,
            "package": self.package,
            "installed": self.installed,
            "fixed": self.fixed,
            "severity": self.severity,
            "digest": self.digest,
            "platform": self.platform,
            "purl": self.purl,
            "title": self.title,
        }


def _walk(
    facts: ImageFacts | IndexFacts, platform: str | None, label: str | None
) -> Iterator[GateFinding]:
    if isinstance(facts, ImageFacts):
        scan = facts.marked.scan
        if scan is None:
            return
        for f in scan.findings:
            if f.vex_status != NOT_AFFECTED:
                yield GateFinding(
                    f.vuln_id, f.package, f.installed, f.fixed, f.severity, facts.digest,
                    label, f.purl, f.title,
                )  # fmt: skip
        return
    for child in facts.children:
        if child.facts is None or child.kind not in ("image", "index"):
            continue
        if child.kind == "image" and platform is not None and child.platform != platform:
            continue
        yield from _walk(child.facts, platform, child.platform or label)


def _rank(finding: GateFinding) -> int:
    severity = finding.severity.upper()
    return -SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def findings_of(
    facts: ImageFacts | IndexFacts, *, platform: str | None = None, limit: int = MAX_FINDINGS
) -> tuple[GateFinding, ...]:
    """The findings of ``facts`` (every platform image of an index, or ``platform``'s only),
    the most severe first, at most ``limit``."""
    return tuple(sorted(_walk(facts, platform, None), key=_rank)[:limit])
