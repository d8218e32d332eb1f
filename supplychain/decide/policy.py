"""Policies: rules over evidence that decide allow, deny or pending.

The default policy denies any CRITICAL finding and anything not yet scanned. Rules are data (a
frozen dataclass, loadable from YAML), and their canonical JSON's SHA-256 names the policy in every
verdict, so auditors know exactly which rules decided.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from supplychain.interface import Decision, Evidence, Policy, PolicyError, Verdict

__all__ = ["DEFAULT_RULES", "PolicyRules", "RulesPolicy", "load_policy"]

SEVERITY_ORDER = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
MAX_REASONS = 20
NOT_AFFECTED = "not_affected"
"""The VEX status that keeps a finding from denying: the image is not affected by it."""


@dataclass(frozen=True)
class PolicyRules:
    """What the policy checks."""

    name: str = "default"
    """Policy name shown in verdicts."""
    deny_severities: tuple[str, ...] = ("CRITICAL",)
    """A finding of any of these severities denies."""
    require_signature: bool = False
    """Deny unless at least one signature verified."""
    max_db_age_hours: float | None = None
    """Deny a scan made with an advisory DB older than this (None: no limit)."""


DEFAULT_RULES = PolicyRules()


def load_policy(path: Path | None) -> RulesPolicy:
    """The policy in the YAML file at ``path``, or the default policy."""
    if path is None:
        return RulesPolicy(DEFAULT_RULES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy {path} must be a mapping")
    known = set(asdict(DEFAULT_RULES))
    unknown = set(data) - known
    if unknown:
        raise PolicyError(f"policy {path}: unknown keys {sorted(unknown)}")
    severities = tuple(
        str(s).upper() for s in data.get("deny_severities", DEFAULT_RULES.deny_severities)
    )
    if not set(severities) <= set(SEVERITY_ORDER):
        raise PolicyError(f"policy {path}: deny_severities must be among {SEVERITY_ORDER}")
    age = data.get("max_db_age_hours")
    return RulesPolicy(
        PolicyRules(
            name=str(data.get("name", "custom")),
            deny_severities=severities,
            require_signature=bool(data.get("require_signature", False)),
            max_db_age_hours=float(age) if age is not None else None,
        )
    )


class RulesPolicy(Policy):
    """Evaluates :class:`PolicyRules`."""

    def __init__(self, rules: PolicyRules) -> None:
        self.rules = rules
        self.name = rules.name
        canonical = json.dumps(asdict(rules), sort_keys=True, separators=(",", ":"))
        self._digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def digest(self) -> str:
        return self._digest

    def evaluate(self, evidence: Evidence, now: datetime) -> Verdict:
        if evidence.scan is None:
            return self._verdict(
                "pending", ["not scanned yet: no decision until the scan finishes"], now
            )
        reasons: list[str] = []
        counts: dict[str, int] = {}
        exempt = 0
        for finding in evidence.scan.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
            if finding.vex_status == NOT_AFFECTED:  # a VEX statement (kept, shown, not denying)
                exempt += 1
                continue
            if finding.severity in self.rules.deny_severities:
                reasons.append(
                    f"{finding.severity} {finding.vuln_id} in {finding.package} {finding.installed}"
                    + (f" (fixed in {finding.fixed})" if finding.fixed else " (no fix)")
                )
        if len(reasons) > MAX_REASONS:
            reasons = [*reasons[:MAX_REASONS], f"… and {len(reasons) - MAX_REASONS} more"]
        age_limit = self.rules.max_db_age_hours
        if age_limit is not None:
            updated = evidence.scan.db_updated_at
            if updated is None or now - updated > timedelta(hours=age_limit):
                reasons.append(
                    f"advisory DB older than {age_limit:g}h (updated {updated or 'unknown'})"
                )
        signed = any(s.verified and not s.is_attestation for s in evidence.signatures)
        if self.rules.require_signature and not signed:
            reasons.append("no verified signature")
        details: dict[str, Any] = {"severity_counts": counts, "not_affected": exempt}
        if reasons:
            return self._verdict("deny", reasons, now, details)
        denied = "/".join(self.rules.deny_severities) or "none"
        return self._verdict("allow", [f"no finding of severity {denied}"], now, details)

    def _verdict(
        self,
        decision: Decision,
        reasons: list[str],
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> Verdict:
        return Verdict(decision, tuple(reasons), self.name, self.digest, now, details or {})
