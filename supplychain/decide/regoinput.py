"""The input document Rego rules read: built from the loaded facts alone, versioned. Pure.

``input.version`` names the schema (:data:`INPUT_VERSION`); a field is only ever added within a
version, never renamed or removed. The schema, with an example, is in ``docs/policy.md``. Only
verified signatures and attestations are given (unverified ones are not facts about the signer),
findings carry the VEX status the decision matched, and waivers are those in force at the
decision's time. Times are ISO 8601 UTC strings.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from supplychain.decide.waivers import active
from supplychain.interface import Evidence, SignatureEvidence

__all__ = ["INPUT_VERSION", "policy_input", "probe_input"]

INPUT_VERSION = "supplychain.dev/policy-input/v1"


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _signed(s: SignatureEvidence) -> dict[str, Any]:
    return {"kind": s.kind, "signer": s.signer, "signed_at": _when(s.signed_at)}


def probe_input() -> dict[str, Any]:
    """The smallest valid input (what a module is compiled against when the policy loads)."""
    return {"version": INPUT_VERSION}


def policy_input(evidence: Evidence, now: datetime) -> dict[str, Any]:
    """The input document for ``evidence`` (VEX already matched) at ``now``."""
    subject = evidence.subject or ""
    registry, _, repository = subject.partition("/")
    scan = evidence.scan
    config = evidence.config
    licenses = Counter(text for c in evidence.components for text in c.licenses)
    return {
        "version": INPUT_VERSION,
        "now": now.isoformat(),
        "image": {
            "registry": registry,
            "repository": repository,
            "name": subject,
            "digest": evidence.digest,
        },
        "config": None if config is None else config.as_json(),
        "scan": None
        if scan is None
        else {
            "scanner": scan.scanner,
            "scanner_version": scan.scanner_version,
            "scanned_at": _when(scan.scanned_at),
            "db_updated_at": _when(scan.db_updated_at),
            "db_digest": scan.db_digest,
        },
        "sbom": {
            "components": len(evidence.components),
            "types": dict(Counter(c.type for c in evidence.components)),
            "licenses": dict(licenses),
            "packages": [
                {
                    "name": c.name,
                    "version": c.version,
                    "type": c.type,
                    "purl": c.purl,
                    "licenses": list(c.licenses),
                }
                for c in evidence.components
            ],
        },
        "findings": [
            {
                "id": f.vuln_id,
                "aliases": list(f.aliases),
                "kind": f.kind,
                "package": f.package,
                "purl": f.purl,
                "installed": f.installed,
                "fixed": f.fixed,
                "severity": f.severity,
                "cvss": f.cvss_score,
                "status": f.status,
                "title": f.title,
                "vex": None
                if f.vex_status is None
                else {"status": f.vex_status, "justification": f.vex_justification},
            }
            for f in (scan.findings if scan is not None else ())
        ],
        "signatures": [
            _signed(s) for s in evidence.signatures if s.verified and not s.is_attestation
        ],
        "attestations": [
            {**_signed(s), "predicate_type": s.predicate_type}
            for s in evidence.signatures
            if s.verified and s.is_attestation
        ],
        "waivers": [
            {
                "id": w.id,
                "digest": w.digest,
                "repository": w.repository,
                "cve": w.cve,
                "package": w.package,
                "rule": w.rule,
                "owner": w.owner,
                "ticket": w.ticket,
                "expires_at": w.expires_at.isoformat(),
                "justification": w.justification,
            }
            for w in evidence.waivers
            if active(w, evidence, now)
        ],
    }
