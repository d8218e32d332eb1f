"""``--output markdown``: a pull-request comment (GitHub or GitLab flavoured)."""

from __future__ import annotations

import re

from supplychain.report._advisory import advisory_url
from supplychain.report.interface import Renderer, Report

__all__ = ["MAX_ROWS", "MarkdownRenderer"]

MAX_ROWS = 50
"""Findings listed at most (a GitHub comment holds 65536 characters)."""
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")
HEADLINE = {
    "allow": "✅ allowed",
    "deny": "❌ denied",
    "pending": "⏳ pending",
    "error": "⚠️ no decision",
}


def _md(text: str) -> str:
    """``text`` with Markdown and HTML specials escaped, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


class MarkdownRenderer(Renderer):
    """Headline, pinned digest, policy, reasons and a table of findings."""

    name = "markdown"

    def render(self, report: Report) -> str:
        lines = [f"### supplychain gate: {HEADLINE[report.decision]}", ""]
        lines.append(f"- **Image**: `{report.image.replace('`', '')}`")
        if report.pinned:
            lines.append(f"- **Deploy**: `{report.pinned.replace('`', '')}`")
        if report.policy:
            lines.append(f"- **Policy**: {_md(report.policy)} (`{report.policy_digest or ''}`)")
        if report.error:
            lines.append(f"- **Error**: {_md(report.error)}")
        if report.reasons:
            lines += ["", "**Reasons**", ""]
            lines += [f"- {_md(reason)}" for reason in report.reasons]
        if report.findings:
            lines += [
                "",
                f"<details><summary>{len(report.findings)} vulnerabilities</summary>",
                "",
                "| Severity | Advisory | Package | Installed | Fixed in |",
                "| --- | --- | --- | --- | --- |",
            ]
            for f in report.findings[:MAX_ROWS]:
                link = f"[{_md(f.id)}]({advisory_url(f.id)})"
                lines.append(
                    f"| {_md(f.severity)} | {link} | {_md(f.package)} | {_md(f.installed)} "
                    f"| {_md(f.fixed or '-')} |"
                )
            if len(report.findings) > MAX_ROWS:
                lines.append(f"| … | and {len(report.findings) - MAX_ROWS} more | | | |")
            lines += ["", "</details>"]
        return "\n".join(lines) + "\n"
