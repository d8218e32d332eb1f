"""Policies: rules over evidence that decide allow, deny or pending.

The default policy denies any CRITICAL finding and anything not yet scanned. Rules are data
(:mod:`supplychain.decide.rules`, loaded from YAML by :mod:`supplychain.decide.policyfile`), and
their canonical JSON's SHA-256 names the policy in every verdict, so auditors know exactly which
rules decided. A policy may scope rules to registry/repository glob patterns: the most specific
matching pattern wins (see :func:`ScopedPolicy.rules_for`). Waivers recorded for the image lift
the violations they cover until they expire (:mod:`supplychain.decide.waivers`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from supplychain.decide.rules import (
    NOT_AFFECTED,
    SEVERITY_ORDER,
    RuleSet,
    Violation,
    violations,
)
from supplychain.decide.waivers import apply_waivers, describe
from supplychain.interface import Decision, Evidence, Policy, Verdict

__all__ = [
    "DEFAULT_RULES",
    "NOT_AFFECTED",
    "SEVERITY_ORDER",
    "PolicyRules",
    "RulesPolicy",
    "Scope",
    "ScopedPolicy",
    "load_policy",
]

MAX_REASONS = 20


@dataclass(frozen=True)
class PolicyRules:
    """The old (unversioned) policy format's three keys."""

    name: str = "default"
    """Policy name shown in verdicts."""
    deny_severities: tuple[str, ...] = ("CRITICAL",)
    """A finding of any of these severities denies."""
    require_signature: bool = False
    """Deny unless at least one signature verified."""
    max_db_age_hours: float | None = None
    """Deny a scan made with an advisory DB older than this (None: no limit)."""


DEFAULT_RULES = PolicyRules()


@dataclass(frozen=True)
class Scope:
    """Rules for the images whose ``registry/repository`` matches a glob pattern."""

    pattern: str
    """``fnmatch`` glob over ``registry/repository``, e.g. ``ghcr.io/team/*``."""
    rules: RuleSet
    """The rules (keys the scope leaves out are the policy's defaults)."""

    @property
    def specificity(self) -> tuple[int, int]:
        """(literal characters, length): the larger wins among matching patterns."""
        literal = sum(1 for ch in self.pattern if ch not in "*?[]")
        return literal, len(self.pattern)


def load_policy(path: Path | None) -> ScopedPolicy:
    """The policy in the YAML file at ``path``, or the default policy."""
    if path is None:
        return RulesPolicy(DEFAULT_RULES)
    from supplychain.decide.policyfile import read_policy

    return read_policy(path)


class ScopedPolicy(Policy):
    """Evaluates default rules and scoped rules; the most specific matching scope wins."""

    def __init__(
        self, name: str, default: RuleSet, scopes: tuple[Scope, ...] = (), *, canonical: Any
    ) -> None:
        self.name = name
        self.default = default
        self.scopes = scopes
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        self._digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    @property
    def digest(self) -> str:
        return self._digest

    def rules_for(self, subject: str | None) -> tuple[str, RuleSet]:
        """(the scope's pattern or ``default``, its rules) for ``registry/repository``.

        Precedence: among the scopes whose pattern matches, the one with the most literal
        (non-wildcard) characters wins, then the longer pattern, then the one written first.
        """
        best: Scope | None = None
        for scope in self.scopes:
            if subject is not None and fnmatchcase(subject, scope.pattern):
                if best is None or scope.specificity > best.specificity:
                    best = scope
        return (best.pattern, best.rules) if best else ("default", self.default)

    def evaluate(self, evidence: Evidence, now: datetime) -> Verdict:
        if evidence.scan is None:
            return self._verdict(
                "pending", ["not scanned yet: no decision until the scan finishes"], now
            )
        scope, rules = self.rules_for(evidence.subject)
        counts: dict[str, int] = {}
        exempt = 0
        for finding in evidence.scan.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
            exempt += finding.vex_status == NOT_AFFECTED
        custom, warnings = _rego(rules, evidence, now)
        found, used = apply_waivers([*violations(rules, evidence, now), *custom], evidence, now)
        details: dict[str, Any] = {
            "severity_counts": counts,
            "not_affected": exempt,
            "scope": scope,
            "rules": sorted({v.rule for v in found}),
            "waivers": [w.id for w in used],
        }
        if warnings:
            details["warnings"] = warnings
        waived = [f"waived by {describe(w)}" for w in used] + [f"warning: {w}" for w in warnings]
        if found:
            reasons = [v.text for v in found]
            if len(reasons) > MAX_REASONS:
                reasons = [*reasons[:MAX_REASONS], f"… and {len(reasons) - MAX_REASONS} more"]
            return self._verdict("deny", [*reasons, *waived], now, details)
        denied = "/".join(rules.deny_severities) or "none"
        return self._verdict("allow", [f"no finding of severity {denied}", *waived], now, details)

    def _verdict(
        self,
        decision: Decision,
        reasons: list[str],
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> Verdict:
        return Verdict(decision, tuple(reasons), self.name, self.digest, now, details or {})


def _rego(rules: RuleSet, evidence: Evidence, now: datetime) -> tuple[list[Violation], list[str]]:
    """The deny violations and warn messages of the policy's Rego modules; a module that cannot
    be evaluated denies, with the reason (fail closed)."""
    if not rules.rego:
        return [], []
    from supplychain.decide.rego import evaluate
    from supplychain.decide.regoinput import policy_input

    document = policy_input(evidence, now)
    found: list[Violation] = []
    warnings: list[str] = []
    for module, outcome in zip(rules.rego, evaluate(rules.rego, document), strict=True):
        if outcome.error is not None:
            found.append(Violation("rego", f"rego {module.path}: not evaluated: {outcome.error}"))
        found += [Violation("rego", f"rego {module.path}: {text}") for text in outcome.deny]
        warnings += [f"rego {module.path}: {text}" for text in outcome.warn]
    return found, warnings


class RulesPolicy(ScopedPolicy):
    """The old format's three keys, evaluated as one unscoped rule set (same digest as before)."""

    def __init__(self, rules: PolicyRules) -> None:
        from supplychain.decide.rules import SignatureRule

        self.rules = rules
        ruleset = RuleSet(
            deny_severities=rules.deny_severities,
            signatures=SignatureRule(required=1) if rules.require_signature else None,
            max_db_age_hours=rules.max_db_age_hours,
        )
        super().__init__(rules.name, ruleset, canonical=asdict(rules))
