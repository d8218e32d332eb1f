"""Renderers of the gate's answer: table, json, sarif, junit, markdown (one module each)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supplychain.report.interface import Renderer, Report, ReportFinding, read_answer
from supplychain.report.jsonout import JsonRenderer
from supplychain.report.junit import JunitRenderer
from supplychain.report.markdown import MarkdownRenderer
from supplychain.report.sarif import SarifRenderer
from supplychain.report.table import TableRenderer

__all__ = ["FORMATS", "Renderer", "Report", "ReportFinding", "read_answer", "render"]

RENDERERS: dict[str, Renderer] = {
    r.name: r
    for r in (
        TableRenderer(),
        JsonRenderer(),
        SarifRenderer(),
        JunitRenderer(),
        MarkdownRenderer(),
    )
}
FORMATS = tuple(RENDERERS)
"""The ``--output`` values."""


def render(answer: Mapping[str, Any], output: str, image: str = "") -> str:
    """``answer`` (the gate's JSON) rendered as ``output`` (one of :data:`FORMATS`)."""
    return RENDERERS[output].render(read_answer(answer, image))
