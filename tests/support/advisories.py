"""Advisories the tests put in their Trivy DBs, for packages the test images really contain."""

from __future__ import annotations

from tests.support.trivydb import Advisory

URLLIB3_HIGH = Advisory(
    "CVE-2019-11324",
    "pip::GitHub Security Advisory pip",
    "urllib3",
    "HIGH",
    vulnerable_versions=("<1.24.2",),
    patched_versions=("1.24.2",),
)
"""urllib3 1.23 is in the tiny image and in the app layer."""
