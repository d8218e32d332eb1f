"""Which waivers lift which violations, at a given time. Pure: the one decision calls it.

A waiver applies while ``now < expires_at``: every caller of the one decision passes its ``now``,
so an expired waiver stops applying in the pipeline, the gate, rematch and the CLI at the same
instant. It is scoped to an image digest or to a ``registry/repository`` glob pattern, and it
lifts the violations naming its advisory (id or alias), its package, or its rule.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from fnmatch import fnmatchcase

from supplychain.decide.rules import Violation
from supplychain.interface import Evidence, Waiver

__all__ = ["active", "apply_waivers", "describe"]


def active(waiver: Waiver, evidence: Evidence, now: datetime) -> bool:
    """True when ``waiver`` covers this image at ``now``."""
    if now >= waiver.expires_at:
        return False
    if waiver.digest is not None:
        return evidence.digest is not None and hmac.compare_digest(waiver.digest, evidence.digest)
    return waiver.repository is not None and fnmatchcase(evidence.subject or "", waiver.repository)


def _lifts(waiver: Waiver, violation: Violation) -> bool:
    if waiver.cve is not None:
        return waiver.cve in (violation.vuln_id, *violation.aliases)
    if waiver.package is not None:
        return violation.package == waiver.package
    return waiver.rule is not None and violation.rule == waiver.rule


def describe(waiver: Waiver) -> str:
    """How a verdict names a waiver."""
    what = waiver.cve or waiver.package or f"rule {waiver.rule}"
    return (
        f"waiver {waiver.id} ({what}; owner {waiver.owner}; ticket {waiver.ticket}; "
        f"expires {waiver.expires_at.isoformat()})"
    )


def apply_waivers(
    found: Sequence[Violation], evidence: Evidence, now: datetime
) -> tuple[list[Violation], list[Waiver]]:
    """(the violations no active waiver lifts, the waivers that lifted at least one)."""
    live = [w for w in evidence.waivers if active(w, evidence, now)]
    kept: list[Violation] = []
    used: dict[int, Waiver] = {}
    for violation in found:
        lifting = [w for w in live if _lifts(w, violation)]
        if not lifting:
            kept.append(violation)
        for w in lifting:
            used[w.id] = w
    return kept, [used[k] for k in sorted(used)]
