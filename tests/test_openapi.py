"""The OpenAPI description: served at /v1/openapi.json to anyone, checked in as
docs/openapi.json (regenerate with ``python scripts/openapi.py > docs/openapi.json``),
and complete: every route of the app is in it, with the error answers it gives."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from supplychain.api.app import create_app
from supplychain.api.openapi import OPENAPI_PATH, render
from supplychain.evidence.database import Database
from supplychain.service import build_service
from tests.conftest import make_settings
from tests.test_roles import endpoints

CHECKED_IN = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_the_checked_in_description_is_the_served_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    Database(url).upgrade()
    service = build_service(make_settings(tmp_path, url))
    app = create_app(service, workers=0)
    with TestClient(app) as client:
        answer = client.get(OPENAPI_PATH)  # no token: the description is public
    assert answer.status_code == 200
    served = answer.json()
    assert render(served) == CHECKED_IN.read_text(encoding="utf-8"), (
        "docs/openapi.json is stale: python scripts/openapi.py > docs/openapi.json"
    )
    described = {
        (method.upper(), path) for path, item in served["paths"].items() for method in item
    }
    assert described == set(endpoints(app.routes)) - {("GET", OPENAPI_PATH)}
    for path, item in served["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)
            if path.startswith("/v1/history"):
                assert {"401", "403", "422"} <= set(responses), (method, path)
    assert "HTTPValidationError" not in json.dumps(served)  # errors answer ErrorAnswer
