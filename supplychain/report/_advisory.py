"""Where to read about an advisory, and severity as numbers (shared by the renderers)."""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["SECURITY_SEVERITY", "advisory_url", "describe"]

_CVE = re.compile(r"CVE-\d{4}-\d{4,}")
_GHSA = re.compile(r"GHSA(-[23456789cfghjmpqrvwx]{4}){3}")

SECURITY_SEVERITY = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "2.0"}
"""GitHub code scanning ranks ``security-severity`` > 9 critical, 7-8.9 high, 4-6.9 medium,
0.1-3.9 low; UNKNOWN gets none."""


def advisory_url(vuln_id: str) -> str:
    """An https URL describing ``vuln_id`` (NVD for CVEs, GitHub for GHSAs, OSV otherwise)."""
    if _CVE.fullmatch(vuln_id):
        return f"https://nvd.nist.gov/vuln/detail/{vuln_id}"
    if _GHSA.fullmatch(vuln_id):
        return f"https://github.com/advisories/{vuln_id}"
    return f"https://osv.dev/vulnerability/{quote(vuln_id, safe='')}"


def describe(severity: str, vuln_id: str, package: str, installed: str, fixed: str | None) -> str:
    """``CRITICAL CVE-… in requests 2.19.0 (fixed in 2.20.0)``, as the policy words it."""
    fix = f"fixed in {fixed}" if fixed else "no fix"
    return f"{severity} {vuln_id} in {package} {installed} ({fix})"
