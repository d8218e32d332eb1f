"""`supplychain serve --processes 2` on PostgreSQL: two HTTP processes, every delivery one job."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job
from tests.conftest import TOKEN
from tests.support.registry import free_port
from tests.support.service import Process, service_env, wait_for

pytestmark = pytest.mark.e2e
REGISTRY = "registry.example:5000"


def envelope(number: int) -> bytes:
    event = {
        "id": f"event-{number}",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{number:064x}",
            "repository": "team/app",
        },
        "request": {"host": REGISTRY},
    }
    return json.dumps({"events": [event]}).encode()


def test_two_http_processes_share_the_port_and_lose_nothing(
    tmp_path: Path, pg_url: str, db: Database
) -> None:
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "SUPPLYCHAIN_DATABASE_URL": pg_url,
            "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
            "SUPPLYCHAIN_REGISTRIES": REGISTRY,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
        }
    )
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--workers", "0"]
    server = Process(["serve", *listen, "--processes", "2"], env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, 60, lambda: server.log()[-3000:])

        def post(number: int) -> int:
            answer = requests.post(
                f"{url}/v1/hooks/distribution",
                data=envelope(number),
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            return int(answer.json().get("accepted", -1)) if answer.status_code == 202 else -1

        with ThreadPoolExecutor(8) as pool:
            accepted = list(pool.map(post, range(100)))
    finally:
        server.stop()
    assert accepted == [1] * 100
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 100
    assert server.log().count("Started server process") == 2
