"""The one decision: loaded facts, a policy and a time in; a verdict out.

Pure: no database, no registry, no clock. Workers only record facts; the pipeline's verdict, the
gate, rematch, the VSA we sign and every later consumer load the facts
(:mod:`supplychain.evidence.load`) and call :func:`decide` or :func:`decide_index`, so their
answers are equal by construction. VEX is matched here, once, by id or alias, from uploaded and
verified attested documents alike.

An index is decided from its own recorded entries only: every platform image must be allowed
(or, with ``platform``, the one a runtime would pick); an attestation entry whose content did not
verify as one counts as an image; a nested index is decided the same way; an index that could
not be expanded (too many entries, nested too deep, a missing child) is denied with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property

from supplychain.decide.vex import VexStatement, match_vex
from supplychain.interface import Decision, Evidence, Policy, Verdict

__all__ = ["NO_PLATFORM", "ChildFacts", "ImageFacts", "IndexFacts", "decide", "decide_index"]

MAX_INDEX_REASONS = 20
"""Reasons an index verdict lists at most (the rest are counted)."""
NO_PLATFORM = "no image for the requested platform"


@dataclass(frozen=True)
class ImageFacts:
    """What is recorded about one image manifest."""

    digest: str
    """The image manifest's digest."""
    evidence: Evidence
    """Its latest scan (None while not scanned) and the signatures found with it."""
    vex: tuple[VexStatement, ...] = ()
    """VEX statements about this image, oldest first: uploaded and verified attested alike."""
    failure: str | None = None
    """Why the image could not be processed yet (the job's last error), if it could not."""

    @cached_property
    def marked(self) -> Evidence:
        """The evidence with each finding marked by the VEX statements matching it (none
        deleted). Facts are immutable, so this is computed once per loaded facts: a cached
        image answers the gate again and again (the policy, which reads the time, still runs
        every time)."""
        scan = self.evidence.scan
        if scan is None:
            return self.evidence
        marked = replace(scan, findings=match_vex(scan.findings, self.vex, self.digest))
        return replace(self.evidence, scan=marked)


@dataclass(frozen=True)
class ChildFacts:
    """One entry of an image index with what is recorded about its target."""

    digest: str
    """The entry's digest."""
    platform: str | None
    """The platform the entry states."""
    kind: str
    """``image``, ``index``, ``attestation`` (content verified as one) or ``artifact``."""
    facts: ImageFacts | IndexFacts | None
    """The child's facts; None when nothing is recorded for it yet."""


@dataclass(frozen=True)
class IndexFacts:
    """What is recorded about one image index."""

    digest: str
    """The index's digest."""
    expanded: bool
    """True once its entries were read from the verified index manifest."""
    error: str | None
    """Why it could not be expanded (limits, missing child, malformed): a deny."""
    children: tuple[ChildFacts, ...] = ()
    """Its entries, in order."""


def _verdict(
    decision: Decision,
    reasons: Sequence[str],
    policy: Policy,
    now: datetime,
    rules: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> Verdict:
    details: dict[str, object] = {"rules": sorted(set(rules))} if rules else {}
    if warnings:
        details["warnings"] = list(warnings)
    return Verdict(decision, tuple(reasons), policy.name, policy.digest, now, details)


def decide(facts: ImageFacts, policy: Policy, now: datetime) -> Verdict:
    """The verdict on one image: VEX matched to the findings, then the policy at ``now``."""
    scan = facts.evidence.scan
    if scan is None:
        reason = "not scanned yet: no decision until the scan finishes"
        if facts.failure:
            reason = f"not scanned yet: the last attempt failed: {facts.failure}"
        return _verdict("pending", [reason], policy, now)
    return policy.evaluate(facts.marked, now)


def _pending(policy: Policy, now: datetime) -> Verdict:
    return _verdict("pending", ["not recorded yet: queued"], policy, now)


def decide_index(
    facts: IndexFacts, policy: Policy, now: datetime, *, platform: str | None = None
) -> Verdict:
    """The verdict on an image index from its own entries; ``platform`` limits it to one
    (unless the policy says every platform must pass)."""
    if policy.every_platform:
        platform = None
    if facts.error:
        return _verdict("deny", [f"image index {facts.digest}: {facts.error}"], policy, now)
    if not facts.expanded:
        return _verdict("pending", ["image index not expanded yet: queued"], policy, now)
    decisions: list[Decision] = []
    reasons: list[str] = []
    rules: list[str] = []  # the rules that denied a platform image, for `policy test`
    warnings: list[str] = []  # the policy's warn messages, per platform
    for child in facts.children:
        if child.kind == "index":
            if not isinstance(child.facts, IndexFacts):
                verdict = _pending(policy, now)
            else:
                verdict = decide_index(child.facts, policy, now, platform=platform)
                if platform is not None and verdict.reasons == (NO_PLATFORM,):
                    continue  # nothing for this platform down there
        elif child.kind == "image":
            if platform is not None and child.platform != platform:
                continue
            if isinstance(child.facts, ImageFacts):
                verdict = decide(child.facts, policy, now)
            else:
                verdict = _pending(policy, now)
        else:
            continue  # verified attestations and platform-less artifacts are never run
        decisions.append(verdict.decision)
        found = verdict.details.get("rules", [])
        rules += [str(r) for r in found] if isinstance(found, list) else []
        label = child.platform or child.digest
        said = verdict.details.get("warnings", [])
        warnings += [f"{label}: {w}" for w in said] if isinstance(said, list) else []
        reasons += [f"{label}: {reason}" for reason in verdict.reasons]
    if not decisions:
        reason = NO_PLATFORM if platform is not None else "image index lists no platform image"
        return _verdict("deny", [reason], policy, now)
    decision: Decision = (
        "deny" if "deny" in decisions else "pending" if "pending" in decisions else "allow"
    )
    if len(reasons) > MAX_INDEX_REASONS:
        reasons = [*reasons[:MAX_INDEX_REASONS], f"… and {len(reasons) - MAX_INDEX_REASONS} more"]
    return _verdict(decision, reasons, policy, now, rules, warnings)
