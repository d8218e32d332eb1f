"""``--output table``: for people at a terminal."""

from __future__ import annotations

from supplychain.report.interface import Renderer, Report

__all__ = ["TableRenderer"]


class TableRenderer(Renderer):
    """Decision, pinned digest, policy, reasons, then one aligned line per finding."""

    name = "table"

    def render(self, report: Report) -> str:
        lines = [f"decision: {report.decision}"]
        if report.pinned:
            lines.append(f"pinned:   {report.pinned}")
        if report.policy:
            lines.append(f"policy:   {report.policy} ({report.policy_digest})")
        lines += [f"  - {reason}" for reason in report.reasons]
        if report.error:
            lines.append(f"error:    {report.error}")
        if report.findings:
            rows = [("SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED", "PLATFORM")]
            rows += [
                (f.severity, f.id, f.package, f.installed, f.fixed or "-", f.platform or "")
                for f in report.findings
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            lines.append("")
            lines += [
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
                for row in rows
            ]
        return "\n".join(lines) + "\n"
