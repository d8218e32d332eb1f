"""What a policy costs the one decision: YAML rules, a licence rule, Rego modules.

Run: ``python3 bench/policy_bench.py [--runs 30]``. Facts like a Debian image's (packages with
DEP-5 licence lists, findings) are decided with :func:`supplychain.decide.decision.decide`, as
the gate does for every answer, under policies read from files; medians in milliseconds. The
first decision of each Rego policy (which compiles the module in this thread) is reported apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supplychain.decide.decision import ImageFacts, decide
from supplychain.decide.policyfile import read_policy
from supplychain.decide.regoinput import policy_input
from supplychain.interface import (
    Component,
    Evidence,
    Finding,
    ImageConfig,
    Policy,
    ScanResult,
)

REGO = """package bench

import rego.v1

deny contains msg if {
  some f in input.findings
  f.severity == "CRITICAL"
  f.vex == null
  msg := sprintf("%s in %s", [f.id, f.package])
}

warn contains "runs as root" if input.config.user == ""
"""
LICENCES = ("GPL-2.0-or-later", "LGPL-2.1-or-later OR MIT", "BSD-3-Clause", "public-domain")


def facts(packages: int, findings: int) -> ImageFacts:
    components = tuple(
        Component(f"pkg{i}", "1.0-1", f"pkg:deb/debian/pkg{i}@1.0-1", "deb", licenses=LICENCES)
        for i in range(packages)
    )
    found = tuple(
        Finding(f"CVE-2024-{i:05d}", f"pkg{i % packages}", None, "1.0-1", "1.0-2", "HIGH")
        for i in range(findings)
    )
    scan = ScanResult("trivy", "0.67.2", None, None, found, scanned_at=datetime.now(UTC))
    evidence = Evidence(
        None, None, scan, (), "r.example/team/app", "sha256:" + "ab" * 32, components,
        config=ImageConfig(user=""),
    )  # fmt: skip
    return ImageFacts("sha256:" + "ab" * 32, evidence)


def policies(directory: Path) -> dict[str, Policy]:
    (directory / "bench.rego").write_text(REGO, encoding="utf-8")
    specs = {
        "YAML rules (severities, CVSS)": {"severities": ["CRITICAL"], "cvss_at_least": 9.0},
        "+ licence rule": {"severities": ["CRITICAL"], "licenses": {"deny": ["GPL-3.0-only"]}},
        "+ one Rego module": {"severities": ["CRITICAL"], "rego": ["bench.rego"]},
    }
    made: dict[str, Policy] = {}
    for index, (name, rules) in enumerate(specs.items()):
        path = directory / f"p{index}.yaml"
        path.write_text(json.dumps({"apiVersion": "supplychain.dev/v1", "rules": rules}))
        made[name] = read_policy(path)
    return made


def median_ms(call: object, runs: int) -> tuple[float, float]:
    """(first call, median of the following ``runs``) in ms."""
    assert callable(call)
    start = time.perf_counter()
    call()
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = policies(Path(tmp))
        print("| image facts | input JSON | policy | first (ms) | median (ms) |")
        print("|---|---|---|---|---|")
        for packages, findings in ((100, 5), (1000, 200)):
            image = facts(packages, findings)
            size = len(json.dumps(policy_input(image.evidence, datetime.now(UTC))))
            for name, policy in made.items():
                now = datetime.now(UTC)
                first, median = median_ms(
                    lambda p=policy, i=image, t=now: decide(i, p, t), args.runs
                )
                print(
                    f"| {packages} packages, {findings} findings | {size // 1024} KiB | {name} "
                    f"| {first:.1f} | {median:.2f} |"
                )


if __name__ == "__main__":
    main()
