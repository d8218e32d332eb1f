"""Hostile API calls against a real `serve` process, on SQLite and on PostgreSQL.

Each answer is checked exactly (status and JSON), the server's memory stays bounded while a
400 MB body is streamed at it, and the service still answers `/healthz` after every call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from supplychain.api.app import MAX_API_BODY
from supplychain.intake.webhooks import MAX_BODY as MAX_HOOK_BODY
from tests.support.hostile import BACKENDS, PeakRss, database_url, post_stream, serve
from tests.support.service import Server

pytestmark = pytest.mark.e2e

HUGE = 400 * 1024 * 1024
RSS_GROWTH_LIMIT = 64 * 1024 * 1024
FINITE = "Input should be a finite number"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with database_url(request.param, tmp / "data") as url, serve(tmp, url) as running:
        yield running


@pytest.fixture(autouse=True)
def still_up(server: Server) -> Iterator[None]:
    """After every hostile call the process lives and answers its health check."""
    yield
    assert server.proc.poll() is None, server.log()[-3000:]
    health = requests.get(f"{server.url}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


def metric_lines(server: Server, name: str) -> list[str]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith(name + "{")]


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
def test_a_400_mb_gate_body_is_refused_without_buffering_it(server: Server, declare: bool) -> None:
    with PeakRss(server.proc.pid) as rss:
        before = rss.peak
        answer = post_stream(server.url, "/v1/gate", HUGE, declare=declare)
    assert answer.status == 413
    assert answer.body == {"decision": "error", "error": f"request body over {MAX_API_BODY} bytes"}
    assert answer.sent < 32 * 1024 * 1024, "the server kept reading past its limit"
    assert rss.peak - before < RSS_GROWTH_LIMIT, f"RSS grew {(rss.peak - before) >> 20} MiB"


def test_a_400_mb_webhook_is_refused_without_buffering_it(server: Server) -> None:
    with PeakRss(server.proc.pid) as rss:
        before = rss.peak
        answer = post_stream(server.url, "/v1/hooks/distribution", HUGE)
    assert (answer.status, answer.body) == (
        413,
        {"error": f"request body over {MAX_HOOK_BODY} bytes"},
    )
    assert rss.peak - before < RSS_GROWTH_LIMIT


def test_oversized_webhooks_to_made_up_sources_share_one_metric_label(server: Server) -> None:
    for i in range(25):
        answer = requests.post(
            f"{server.url}/v1/hooks/made-up-{i}", data=b"x" * (MAX_HOOK_BODY + 1), timeout=30
        )
        assert (answer.status_code, answer.json()) == (
            413,
            {"error": f"request body over {MAX_HOOK_BODY} bytes"},
        )
    small = requests.post(f"{server.url}/v1/hooks/made-up-x", data=b"{}", timeout=30)
    assert (small.status_code, small.json()["error"]) == (
        404,
        "no webhook adapter named 'made-up-x'",
    )
    hooks = metric_lines(server, "supplychain_webhook_requests_total")
    assert not [line for line in hooks if "made-up" in line], hooks
    assert any(re.match(r'.*source="unknown",status="413"\} 25\.0$', line) for line in hooks), hooks
    routes = metric_lines(server, "supplychain_http_requests_total")
    assert not [line for line in routes if "made-up" in line], routes
    assert any('route="/v1/hooks/{source}"' in line and 'status="413"' in line for line in routes)


def test_unknown_paths_share_one_metric_label(server: Server) -> None:
    for i in range(25):
        answer = requests.get(f"{server.url}/no/such/path-{i}", timeout=5)
        assert (answer.status_code, answer.json()) == (404, {"error": "Not Found"})
    routes = metric_lines(server, "supplychain_http_requests_total")
    assert not [line for line in routes if "path-" in line], routes
    assert any(
        re.match(r'.*method="GET",route="unmatched",status="404"\} 25\.0$', line) for line in routes
    ), routes


@pytest.mark.parametrize(
    ("path", "where", "limit"),
    [
        ("/v1/jobs/99999999999999999999", "path.job_id", "less than or equal to 2147483647"),
        ("/v1/jobs/2147483648", "path.job_id", "less than or equal to 2147483647"),
        ("/v1/jobs/0", "path.job_id", "greater than or equal to 1"),
        (
            "/v1/audit?after=99999999999999999999",
            "query.after",
            "less than or equal to 9223372036854775807",
        ),
        ("/v1/audit?after=-1", "query.after", "greater than or equal to 0"),
        ("/v1/verdicts?limit=99999999999999999999", "query.limit", "less than or equal to 1000"),
    ],
)
def test_huge_integers_answer_422(server: Server, path: str, where: str, limit: str) -> None:
    answer = requests.get(f"{server.url}{path}", headers=server.auth("auditor"), timeout=5)
    problem = f"Input should be {limit}"
    assert (answer.status_code, answer.json()) == (
        422,
        {
            "error": f"invalid request: {where}: {problem}",
            "problems": [{"where": where, "problem": problem}],
        },
    )


def test_the_largest_valid_ids_reach_the_database(server: Server) -> None:
    job = requests.get(
        f"{server.url}/v1/jobs/2147483647", headers=server.auth("auditor"), timeout=5
    )
    assert (job.status_code, job.json()) == (404, {"error": "no such job"})
    audit = requests.get(
        f"{server.url}/v1/audit?after=9223372036854775807",
        headers=server.auth("auditor"),
        timeout=5,
    )
    assert (audit.status_code, audit.json()) == (200, [])


@pytest.mark.parametrize("wait", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_waits_answer_422(server: Server, wait: str) -> None:
    body = '{"image": "127.0.0.1:9/team/app:v1", "wait": ' + wait + "}"
    answer = requests.post(
        f"{server.url}/v1/gate",
        data=body,
        headers={"Content-Type": "application/json", **server.auth("ci")},
        timeout=5,
    )
    assert (answer.status_code, answer.json()) == (
        422,
        {
            "decision": "error",
            "error": f"invalid request: wait: {FINITE}",
            "problems": [{"where": "wait", "problem": FINITE}],
        },
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            b'{"image": "x", "wait": 601}',
            422,
            "invalid request: wait: Input should be less than or equal to 600",
        ),
        (
            b'{"image": "' + b"a" * 2000 + b'"}',
            422,
            "invalid request: image: String should have at most 1024 characters",
        ),
        (b"[" * 30000 + b"]" * 30000, 400, "There was an error parsing the body"),
        (b"[" * 40000 + b"]" * 40000, 413, f"request body over {MAX_API_BODY} bytes"),
        (b'{"image": ', 422, "invalid request: 10: JSON decode error"),
        (b'{"image": "not a reference!"}', 400, None),
    ],
    ids=["wait-too-long", "image-too-long", "deep-nesting", "over-limit", "truncated", "bad-ref"],
)
def test_malformed_gate_calls_answer_4xx_json(
    server: Server, body: bytes, status: int, error: str | None
) -> None:
    answer = requests.post(
        f"{server.url}/v1/gate",
        data=body,
        headers={"Content-Type": "application/json", **server.auth("ci")},
        timeout=5,
    )
    assert answer.status_code == status
    content = answer.json()
    assert content["decision"] == "error"
    if error is not None:
        assert content["error"] == error
    else:  # the reference parser's own message
        assert content["error"], content
