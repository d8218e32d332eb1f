"""``--output json``: the answer as received, for scripts."""

from __future__ import annotations

import json

from supplychain.report.interface import Renderer, Report

__all__ = ["JsonRenderer"]


class JsonRenderer(Renderer):
    """The JSON answer, indented."""

    name = "json"

    def render(self, report: Report) -> str:
        return json.dumps(dict(report.answer), indent=2) + "\n"
