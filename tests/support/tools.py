"""The external tools the tests run, found the way the product finds them."""

from __future__ import annotations

import os

from supplychain.stages.scanner import find_trivy


def trivy() -> str:
    """The Trivy binary: ``SUPPLYCHAIN_TRIVY_PATH``, else ``trivy`` on PATH, else the one
    installed with supplychain (the product's own look-up, so a bare ``pytest`` finds it too)."""
    return find_trivy(os.environ.get("SUPPLYCHAIN_TRIVY_PATH") or None)
