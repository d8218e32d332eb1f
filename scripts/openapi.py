"""Print the API's OpenAPI description: ``python scripts/openapi.py > docs/openapi.json``.

The description of a default-configured app, as ``GET /v1/openapi.json`` serves it
(``tests/test_openapi.py`` checks the two are equal).
"""

from __future__ import annotations

import sys
import tempfile

from supplychain.api.app import create_app
from supplychain.api.openapi import describe, render
from supplychain.config import load_settings
from supplychain.service import build_service


def main() -> int:
    """Print the description."""
    with tempfile.TemporaryDirectory() as tmp:
        service = build_service(load_settings({"SUPPLYCHAIN_DATA_DIR": tmp}))
        try:
            sys.stdout.write(render(describe(create_app(service, workers=0))))
        finally:
            service.db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
