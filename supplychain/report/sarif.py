"""``--output sarif``: SARIF 2.1.0 for GitHub code scanning (``github/codeql-action/upload-sarif``).

One rule per advisory (help URI, ``security-severity`` so GitHub ranks it), one result per
vulnerable package, plus one result for the gate's decision itself (rule ``supplychain/gate``):
an error on deny, a warning when there is no decision, a pass on allow. Results are located at the
image's repository path (as Trivy does for images): GitHub requires a location on every result.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from supplychain.report._advisory import SECURITY_SEVERITY, advisory_url, describe
from supplychain.report.interface import Renderer, Report, ReportFinding

__all__ = ["GATE_RULE", "SarifRenderer"]

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
GATE_RULE = "supplychain/gate"
LEVELS = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("supplychain")
    except PackageNotFoundError:
        return "0"


def _location(report: Report) -> list[dict[str, Any]]:
    """The repository path, registry dropped (``host:port/…`` would read as a URI scheme)."""
    name = (report.pinned or report.image).split("@", 1)[0]
    path = name.split("/", 1)[1] if "/" in name else name
    return [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": path or "image", "uriBaseId": "ROOTPATH"},
                "region": {"startLine": 1},
            },
            "message": {"text": report.pinned or report.image},
        }
    ]


def _rule(finding: ReportFinding) -> dict[str, Any]:
    url = advisory_url(finding.id)
    title = finding.title or f"{finding.id} in {finding.package}"
    rule: dict[str, Any] = {
        "id": finding.id,
        "name": "VulnerablePackage",
        "shortDescription": {"text": title[:1024]},
        "fullDescription": {"text": title},
        "helpUri": url,
        "help": {
            "text": f"{finding.id}: {title}. See {url}",
            "markdown": f"**{finding.id}**: {title}\n\nSee [{finding.id}]({url}).",
        },
        "defaultConfiguration": {"level": LEVELS.get(finding.severity, "note")},
        "properties": {
            "tags": ["security", "vulnerability", finding.severity],
            "precision": "very-high",
        },
    }
    if finding.severity in SECURITY_SEVERITY:
        rule["properties"]["security-severity"] = SECURITY_SEVERITY[finding.severity]
    return rule


def _gate_rule() -> dict[str, Any]:
    return {
        "id": GATE_RULE,
        "name": "DeployGate",
        "shortDescription": {"text": "The deploy gate's decision on the image"},
        "help": {"text": "Deploy only images the gate allows, by the pinned digest it returns."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "supply-chain"]},
    }


def _fingerprint(*parts: str | None) -> str:
    return hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()


class SarifRenderer(Renderer):
    """A SARIF 2.1.0 log with one run."""

    name = "sarif"

    def render(self, report: Report) -> str:
        rules: dict[str, dict[str, Any]] = {GATE_RULE: _gate_rule()}
        index = {GATE_RULE: 0}
        location = _location(report)
        level = {"deny": "error", "allow": "none"}.get(report.decision, "warning")
        summary = "; ".join(report.reasons or ((report.error or report.decision),))
        results: list[dict[str, Any]] = [
            {
                "ruleId": GATE_RULE,
                "ruleIndex": 0,
                "kind": "pass" if report.decision == "allow" else "fail",
                "level": level,
                "message": {"text": f"{report.decision}: {summary}"[:4000]},
                "locations": location,
                "partialFingerprints": {
                    "supplychain/v1": _fingerprint(GATE_RULE, report.image, report.digest)
                },
                "properties": {"decision": report.decision, "pinned": report.pinned},
            }
        ]
        for finding in report.findings:
            if finding.id not in rules:
                index[finding.id] = len(rules)
                rules[finding.id] = _rule(finding)
            results.append(
                {
                    "ruleId": finding.id,
                    "ruleIndex": index[finding.id],
                    "level": LEVELS.get(finding.severity, "note"),
                    "message": {
                        "text": describe(
                            finding.severity,
                            finding.id,
                            finding.package,
                            finding.installed,
                            finding.fixed,
                        )
                        + f" in {finding.digest or report.pinned or report.image}"
                    },
                    "locations": location,
                    "partialFingerprints": {
                        "supplychain/v1": _fingerprint(
                            finding.id, finding.package, finding.installed, finding.digest
                        )
                    },
                    "properties": {
                        "package": finding.package,
                        "installed": finding.installed,
                        "fixed": finding.fixed,
                        "severity": finding.severity,
                        "digest": finding.digest,
                    },
                }
            )
        log = {
            "$schema": SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "supplychain",
                            "version": _version(),
                            "rules": list(rules.values()),
                        }
                    },
                    "invocations": [
                        {
                            "executionSuccessful": report.decision != "error",
                            "exitCode": report.exit_code,
                        }
                    ],
                    "results": results,
                    "properties": {
                        "image": report.image,
                        "pinned": report.pinned,
                        "policy": report.policy,
                        "policyDigest": report.policy_digest,
                    },
                }
            ],
        }
        return json.dumps(log, indent=2) + "\n"
