"""The ``supplychain`` program (``python -m supplychain.cli`` too).

``supplychain sbom`` of a local image starts inflating the image's layers here, before the rest
of the command line loads (its imports and parser took ~45 ms, during which the second core
had nothing to do); every command then runs through :func:`supplychain.cli.main.main`.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Entry point."""
    if sys.argv[1:2] == ["sbom"]:
        from supplychain.cli.sbom import start_early

        start_early(sys.argv[2:])
    from supplychain.cli.main import main as run

    return run()
