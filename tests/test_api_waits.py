"""Gate calls waiting on a pending image hold no thread: 200 of them against a real `serve`.

On SQLite and PostgreSQL: `/healthz` and a thread-pool endpoint answer in milliseconds while 200
calls wait, the 201st waiting call gets 429 with Retry-After, and a worker in another process
finishing the scan wakes all 200 (allow). An in-process worker wakes its waiter at once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from tests.conftest import TOKEN
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.hostile import BACKENDS, database_url, serve
from tests.support.registry import Registry
from tests.support.service import Process, Server, service_env, wait_for
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e

WAITERS = 200


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def env_for(tmp: Path, registry: Registry, **extra: str) -> dict[str, str]:
    build_trivy_db(tmp / "data" / "trivy", [URLLIB3_HIGH])
    return {
        "SUPPLYCHAIN_REGISTRIES": registry.host,
        "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp / "data" / "trivy"),
        **extra,
    }


def gauge(server: Server, name: str) -> float:
    for line in requests.get(f"{server.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def latencies(url: str, count: int = 20) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = requests.get(url, timeout=10)
        times.append(time.perf_counter() - started)
        assert answer.status_code in (200, 503), answer.text
    return times


def test_200_waiting_gate_calls_leave_the_server_responsive(
    tmp_path: Path, registry: Registry, backend: str
) -> None:
    image = f"{registry.host}/team/waits-{backend}:v1"
    images.push(images.tiny_layout(), "tiny", image)
    extra = env_for(
        tmp_path,
        registry,
        SUPPLYCHAIN_GATE_MAX_WAITERS=str(WAITERS),
        SUPPLYCHAIN_GATE_RECHECK_SECONDS="1",
    )
    with database_url(backend, tmp_path / "data") as url, serve(tmp_path, url, extra) as server:

        async def scenario() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=WAITERS + 10)
            async with httpx.AsyncClient(
                base_url=server.url, timeout=300, limits=limits, headers=server.auth("ci")
            ) as client:
                calls = [
                    asyncio.create_task(client.post("/v1/gate", json={"image": image, "wait": 240}))
                    for _ in range(WAITERS)
                ]
                while gauge(server, "supplychain_gate_waiting") < WAITERS:
                    assert not [c for c in calls if c.done()], "a waiting call answered early"
                    await asyncio.sleep(0.5)
                health = await asyncio.to_thread(latencies, f"{server.url}/healthz")
                ready = await asyncio.to_thread(latencies, f"{server.url}/readyz", 5)
                assert statistics.median(health) < 0.05, health
                assert max(health) < 0.5, health
                assert max(ready) < 1.0, ready  # a thread-pool endpoint: no thread is held
                refused = await client.post("/v1/gate", json={"image": image, "wait": 30})
                assert refused.status_code == 429
                assert refused.headers["retry-after"] == "5"
                assert refused.json() == {
                    "decision": "error",
                    "error": f"{WAITERS} gate calls are already waiting; retry later",
                }
                at_once = await client.post("/v1/gate", json={"image": image, "wait": 0})
                assert (at_once.status_code, at_once.json()["decision"]) == (200, "pending")
                worker = Process(
                    ["worker", "--count", "1"],
                    service_env({**server_env(tmp_path, url), **extra}),
                    tmp_path / "worker.log",
                )
                try:
                    return await asyncio.gather(*calls)
                finally:
                    worker.stop()

        answers = asyncio.run(scenario())
        assert {(a.status_code, a.json()["decision"]) for a in answers} == {(200, "allow")}
        assert gauge(server, "supplychain_gate_waiting") == 0


def server_env(tmp: Path, url: str) -> dict[str, str]:
    return {
        "SUPPLYCHAIN_DATA_DIR": str(tmp / "data"),
        "SUPPLYCHAIN_DATABASE_URL": url,
        "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
        "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
    }


def test_an_in_process_worker_wakes_its_waiter_at_once(
    tmp_path: Path, registry: Registry, backend: str
) -> None:
    image = f"{registry.host}/team/wake-{backend}:v1"
    images.push(images.tiny_layout(), "tiny", image)
    # the periodic re-check is far off: only the worker's own signal can answer in time
    extra = env_for(
        tmp_path, registry, SUPPLYCHAIN_WORKERS="1", SUPPLYCHAIN_GATE_RECHECK_SECONDS="500"
    )
    with database_url(backend, tmp_path / "data") as url, serve(tmp_path, url, extra) as server:
        started = time.monotonic()
        answer = requests.post(
            f"{server.url}/v1/gate",
            json={"image": image, "wait": 240},
            headers=server.auth("ci"),
            timeout=300,
        )
        assert (answer.status_code, answer.json()["decision"]) == (200, "allow"), answer.text
        assert time.monotonic() - started < 120
        wait_for(lambda: gauge(server, "supplychain_gate_waiting") == 0, 10, server.log)
