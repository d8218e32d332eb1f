"""The gate when its database is gone, and the gate CLI on non-2xx answers (real `serve`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import PG_SERVER, new_database
from tests.support.hostile import serve
from tests.support.registry import Registry
from tests.support.service import run_cli, service_env

pytestmark = pytest.mark.e2e

DOWN = "database unavailable (OperationalError); failing closed"


def test_gate_answers_503_json_and_the_cli_prints_why_when_the_database_is_gone(
    tmp_path: Path,
) -> None:
    with new_database() as url, serve(tmp_path, url) as server:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        answer = requests.post(
            f"{server.url}/v1/gate",
            json={"image": "127.0.0.1:9/team/app:v1"},
            headers=server.auth("ci"),
            timeout=30,
        )
        assert (answer.status_code, answer.json()) == (503, {"decision": "error", "error": DOWN})
        env = {**service_env({}), "SUPPLYCHAIN_TOKEN": server.auth("ci")["Authorization"][7:]}
        cli = run_cli(["gate", "127.0.0.1:9/team/app:v1", "--server", server.url], env)
        assert cli.returncode == 2
        assert f"error:    gate answered HTTP 503: {DOWN}" in cli.stdout
        assert "Expecting value" not in cli.stdout + cli.stderr
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_gate_cli_prints_a_non_json_error_page(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry") as registry:  # answers /v1/gate with a text 404
        cli = run_cli(["gate", "x/y:z", "--server", f"http://{registry.host}"], service_env({}))
    assert cli.returncode == 2
    assert "error:    gate answered HTTP 404: 404 page not found" in cli.stdout, cli.stdout
    assert "Expecting value" not in cli.stdout + cli.stderr
