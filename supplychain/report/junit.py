"""``--output junit``: JUnit XML for CI test reports (GitLab ``artifacts:reports:junit``, Jenkins).

Two suites, as Trivy's JUnit template has them per image: ``gate`` with one test case per reason
(failures on deny, errors when there is no decision, one passing case on allow), and
``vulnerabilities`` with one failed test case per vulnerable package.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from supplychain.report._advisory import advisory_url, describe
from supplychain.report.interface import Renderer, Report

__all__ = ["JunitRenderer"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a hostile advisory may have them)."""
    return _NOT_XML.sub("\ufffd", text)


def _suite(parent: ET.Element, name: str, report: Report) -> ET.Element:
    suite = ET.SubElement(parent, "testsuite", name=name)
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("image", report.image),
        ("decision", report.decision),
        ("pinned", report.pinned),
        ("policy", report.policy),
        ("policy_digest", report.policy_digest),
    ):
        if value:
            ET.SubElement(properties, "property", name=key, value=_x(value))
    return suite


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for kind in ("failure", "error", "skipped"):
        suite.set(
            "failures" if kind == "failure" else "errors" if kind == "error" else kind,
            str(sum(1 for case in cases if case.find(kind) is not None)),
        )


class JunitRenderer(Renderer):
    """A ``<testsuites>`` document."""

    name = "junit"

    def render(self, report: Report) -> str:
        root = ET.Element("testsuites", name=_x(f"supplychain gate {report.image}"))
        gate = _suite(root, _x(f"gate {report.image}"), report)
        classname = _x(f"supplychain.gate.{report.pinned or report.image}")
        reasons = [_x(r) for r in report.reasons or ((report.error or report.decision),)]
        for reason in reasons:
            case = ET.SubElement(gate, "testcase", name=reason[:200], classname=classname)
            if report.decision == "deny":
                ET.SubElement(case, "failure", message=reason, type="deny").text = reason
            elif report.decision != "allow":
                ET.SubElement(case, "error", message=reason, type=report.decision).text = reason
        _count(gate)
        vulns = _suite(root, _x(f"vulnerabilities {report.image}"), report)
        for f in report.findings:
            line = _x(describe(f.severity, f.id, f.package, f.installed, f.fixed))
            case = ET.SubElement(
                vulns,
                "testcase",
                name=_x(f"[{f.severity}] {f.id} {f.package} {f.installed}"),
                classname=_x(f"supplychain.image.{f.digest or report.image}"),
            )
            failure = ET.SubElement(case, "failure", message=line, type=_x(f.severity))
            failure.text = _x(
                f"{line}\n{f.title or ''}\n{advisory_url(f.id)}".replace("\n\n", "\n")
            )
        _count(vulns)
        totals = {key: 0 for key in ("tests", "failures", "errors", "skipped")}
        for suite in (gate, vulns):
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
        for key, value in totals.items():
            root.set(key, str(value))
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
