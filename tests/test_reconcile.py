"""Nothing missed: a reconcile pass lists the allowlisted registries (catalog and tags, page by
page) and queues every digest never seen, through the queue's one entrance.

On the real distribution registry (Debian's ``docker-registry``), on PostgreSQL and SQLite. Two
things distribution 2.8 does not do are served by a fake registry named as such: tag lists in
pages (distribution 2.8 ignores ``n`` there) and hostile ``Link`` headers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from supplychain.config import ConfigError, load_settings
from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry, Job, TagEvent, Verdict, WebhookDelivery
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue
from supplychain.reconcile import Reconciler
from supplychain.registry import BlobCache, RegistryClient, RegistryUnavailableError
from supplychain.registry.auth import DockerConfigCredentials
from supplychain.registry.listing import Pacer
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Registry, TokenServer
from tests.support.service import Server, run_cli, service_env, wait_for
from tests.support.trivydb import build_trivy_db

REPOSITORIES = ("team/api", "team/web", "tools/ci", "tools/db", "x")


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "postgresql":
        database: Database = request.getfixturevalue("db")
        return database
    database = Database(f"sqlite:///{tmp_path / 'reconcile.db'}")
    database.upgrade()
    return database


def small_image(root: Path, name: str) -> Path:
    """A one-layer image of the tiny test files plus a file naming it: its own digest."""
    files = {k: v.encode() for k, v in images.TINY_FILES.items()}
    return images.files_layout(root / name, "img", [{**files, "etc/marker": name.encode()}])


def reconciler(db: Database, tmp_path: Path, *hosts: str, **kwargs: Any) -> Reconciler:
    credentials = kwargs.pop("credentials", None)
    client = RegistryClient(
        frozenset(hosts), frozenset(), BlobCache(tmp_path / "blobs", 1 << 30), credentials
    )
    return Reconciler(db, JobQueue(db), client, hosts, **kwargs)


def jobs(db: Database) -> dict[str, str]:
    with db.session() as session:
        return dict(session.execute(select(Job.dedupe_key, Job.kind)).all())


def test_a_pass_pages_through_the_catalog_and_queues_each_digest_once(
    any_db: Database, tmp_path: Path
) -> None:
    with Registry(tmp_path / "registry") as registry:
        digests: dict[str, str] = {}
        for index, repository in enumerate(REPOSITORIES):
            layout = small_image(tmp_path, f"image{index}")
            digests[repository] = images.push(layout, "img", f"{registry.host}/{repository}:v1")
            images.push(layout, "img", f"{registry.host}/{repository}:latest")  # same digest
        signature = digests["team/api"].replace(":", "-") + ".sig"
        images.push(small_image(tmp_path, "sig"), "img", f"{registry.host}/team/api:{signature}")
        webhook = ImageTarget(registry.host, "team/web", digests["team/web"], "v1")
        with any_db.session(write=True) as session:  # a webhook got this one through
            assert JobQueue(any_db).enqueue(session, "image", webhook)

        first = reconciler(any_db, tmp_path, registry.host, page_size=2, rate=0).run()
        (done,) = first.registries
        assert done.errors == ()
        assert done.repositories == 5 and done.tags == 10 and done.skipped == 1  # the .sig tag
        expected = {f"{registry.host}/{r}@{d}" for r, d in digests.items() if r != "team/web"}
        assert set(first.queued) == expected and len(first.queued) == 4
        assert done.known == 1
        # five repositories, two per page: three catalog pages, each asked for with n=2
        catalog = re.findall(r'"GET /v2/_catalog\?([^ "]*) HTTP', registry.log())
        assert [parse_qs(q)["n"] for q in catalog] == [["2"]] * 3
        assert [parse_qs(q).get("last") for q in catalog] == [None, ["team/web"], ["tools/db"]]
        assert done.requests == 3 + 5 + 10  # catalog pages, tag lists, one HEAD per tag

        queued = jobs(any_db)
        assert set(queued) == {*expected, webhook.pinned}
        assert {queued[pinned] for pinned in expected} == {"manifest"}  # the worker looks
        with any_db.session() as session:
            tags = session.execute(
                select(TagEvent.repository, TagEvent.tag, TagEvent.digest).where(
                    TagEvent.source == "reconcile"
                )
            ).all()
            passes = session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "reconcile.pass")
            ).all()
        assert len(tags) == 10 and all(digests[r] == d for r, _, d in tags)
        assert passes == [
            {"repositories": 5, "tags": 10, "queued": 4, "known": 1, "skipped": 1, "errors": []}
        ]

        second = reconciler(any_db, tmp_path, registry.host, page_size=2, rate=0).run()
        assert second.queued == () and second.errors == ()
        assert second.registries[0].known == 5
        assert jobs(any_db) == queued
        with any_db.session() as session:
            assert session.scalar(select(func.count()).select_from(TagEvent)) == 10  # no moves


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RECONCILE_SECONDS", "5", "RECONCILE_SECONDS: 0 (off) or at least 10"),
        ("RECONCILE_PAGE_SIZE", "0", "RECONCILE_PAGE_SIZE: from 1 to 10000"),
        ("RECONCILE_RATE", "-1", "RECONCILE_RATE: must not be negative"),
        ("RECONCILE_REPOSITORIES", "reg.example/ok,oops", "'oops' is not host/repository"),
        ("RECONCILE_REPOSITORIES", "elsewhere.example/app", "elsewhere.example not in"),
    ],
)
def test_reconcile_settings_are_checked_at_start(setting: str, value: str, message: str) -> None:
    env = {"SUPPLYCHAIN_REGISTRIES": "reg.example", f"SUPPLYCHAIN_{setting}": value}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env)
    good = {"SUPPLYCHAIN_REGISTRIES": "reg.example"}
    settings = load_settings({**good, "SUPPLYCHAIN_RECONCILE_REPOSITORIES": "reg.example/a/b"})
    assert settings.reconcile_repositories == (("reg.example", "a/b"),)


# -- a fake registry: paged tag lists, hostile Link headers, a 429 ---------------------------


@dataclass
class FakeRegistry:
    """A fake OCI registry on loopback (distribution 2.8 pages no tag list and sends no bad
    links): ``team/app`` has tags v1…v5 in pages of two, each naming the next with a ``Link``;
    ``links`` replaces the Link of the page after ``last``; the first catalog request is
    answered 429 with ``Retry-After: 1`` when ``throttle`` is set."""

    links: dict[str, str] = field(default_factory=dict)
    throttle: bool = False
    requests: list[str] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                fake.requests.append(f"HEAD {self.path}")
                tag = self.path.rsplit("/", 1)[-1]
                digest = "sha256:" + tag.encode().hex().ljust(64, "0")
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", "400")
                self.end_headers()

            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path == "/v2/_catalog":
                    if fake.throttle:
                        fake.throttle = False
                        self._answer({"errors": [{"code": "TOOMANYREQUESTS"}]}, 429)
                        return
                    self._answer({"repositories": ["team/app"]})
                    return
                n = int(query.get("n", ["100"])[0])
                tags = ["v1", "v2", "v3", "v4", "v5"]
                last = query.get("last", [""])[0]
                page = [t for t in tags if t > last][:n]
                link = None
                if page and page[-1] != tags[-1]:
                    link = fake.links.get(page[-1], f"/v2/team/app/tags/list?last={page[-1]}&n={n}")
                self._answer({"name": "team/app", "tags": page}, link=link)

            def _answer(self, body: Any, status: int = 200, link: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                if link:
                    self.send_header("Link", f'<{link}>; rel="next"')
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[str]]]:
    """Another loopback server: where a hostile Link points. Records every request."""
    seen = FakeRegistry()
    server = seen.serve()
    yield f"127.0.0.1:{server.server_port}", seen.requests
    server.shutdown()


def test_tag_pages_are_followed_on_the_registry_and_429_is_waited_out(
    any_db: Database, tmp_path: Path
) -> None:
    fake = FakeRegistry(throttle=True)
    server = fake.serve()
    host = f"127.0.0.1:{server.server_port}"
    try:
        started = time.monotonic()
        report = reconciler(any_db, tmp_path, host, page_size=2, rate=0).run()
        assert time.monotonic() - started >= 1.0  # Retry-After: 1
    finally:
        server.shutdown()
    (done,) = report.registries
    assert done.errors == () and done.tags == 5 and len(done.queued) == 5
    lists = [r for r in fake.requests if "/tags/list" in r]
    assert lists == [
        "GET /v2/team/app/tags/list?n=2",
        "GET /v2/team/app/tags/list?last=v2&n=2",
        "GET /v2/team/app/tags/list?last=v4&n=2",
    ]
    assert fake.requests[:2] == ["GET /v2/_catalog?n=2"] * 2  # the 429, then again
    assert done.requests == 2 + 3 + 5


@pytest.mark.parametrize(
    "link",
    [
        "http://{other}/v2/team/app/tags/list?last=v2&n=2",  # another host
        "//{other}/v2/team/app/tags/list?last=v2&n=2",  # scheme-relative
        "https://{here}/v2/team/app/tags/list?last=v2&n=2",  # another scheme (and port)
        "http://user:pw@{here}/v2/team/app/tags/list?last=v2&n=2",  # user-info
        "/v2/other/repo/tags/list?last=v2&n=2",  # another endpoint
        "/v2/_catalog?last=v2",  # another endpoint
    ],
)
def test_a_link_off_the_registry_is_never_followed(
    any_db: Database, tmp_path: Path, other_host: tuple[str, list[str]], link: str
) -> None:
    other, other_requests = other_host
    fake = FakeRegistry()
    server = fake.serve()
    here = f"127.0.0.1:{server.server_port}"
    fake.links["v2"] = link.format(other=other, here=here)
    try:
        report = reconciler(any_db, tmp_path, here, page_size=2, rate=0).run()
    finally:
        server.shutdown()
    (done,) = report.registries
    (error,) = done.errors
    assert error.startswith(f"{here}/team/app: {here}: refusing a Link to another")
    assert done.tags == 2 and len(done.queued) == 2  # the first page still counts
    assert other_requests == []
    assert len([r for r in fake.requests if "/tags/list" in r]) == 1


def fail(error: Exception) -> None:
    raise error


def test_the_pacer_spaces_requests_and_retries_only_what_asked_to_be_retried() -> None:
    pacer = Pacer(20)
    started = time.monotonic()
    for _ in range(5):
        pacer.call(lambda: None)
    assert time.monotonic() - started >= 0.2 - 0.01  # four gaps of 1/20 s
    answers: list[Exception | str] = [RegistryUnavailableError("429", retry_after=0), "ok"]

    def flaky() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert pacer.call(flaky) == "ok" and answers == []
    for error in (
        RegistryUnavailableError("503 without Retry-After"),
        RegistryUnavailableError("429, wait too long", retry_after=3600),
    ):
        with pytest.raises(RegistryUnavailableError):
            pacer.call(partial(fail, error))
    always = Pacer(0, retries=2)
    calls = []

    def throttled() -> None:
        calls.append(1)
        raise RegistryUnavailableError("429", retry_after=0)

    with pytest.raises(RegistryUnavailableError):
        always.call(throttled)
    assert len(calls) == 3


# -- credentials from a docker config.json; the command --------------------------------------


def test_the_command_lists_each_registry_with_its_own_docker_credentials(
    tmp_path: Path,
) -> None:
    locked = Registry(tmp_path / "locked", htpasswd={"robot": "s3cret-pass"})
    with locked, Registry(tmp_path / "open") as open_registry:
        pushed = {
            locked.host: images.push(
                small_image(tmp_path, "a"), "img", f"{locked.host}/private/app:v1",
                creds="robot:s3cret-pass",
            ),
            open_registry.host: images.push(
                small_image(tmp_path, "b"), "img", f"{open_registry.host}/public/app:v1"
            ),
        }  # fmt: skip
        config = tmp_path / "docker"
        config.mkdir()
        auth = base64.b64encode(b"robot:s3cret-pass").decode()
        (config / "config.json").write_text(json.dumps({"auths": {locked.host: {"auth": auth}}}))
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
                "SUPPLYCHAIN_REGISTRIES": f"{locked.host},{open_registry.host}",
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            }
        )
        refused = run_cli(["reconcile"], {**env, "DOCKER_CONFIG": str(tmp_path / "none")})
        assert refused.returncode == 2, refused.stderr
        assert f"{locked.host}: " in refused.stderr and "basic auth" in refused.stderr
        assert f"queued {open_registry.host}/public/app@{pushed[open_registry.host]}" in (
            refused.stdout
        )
        listed = run_cli(["reconcile", "--output", "json"], {**env, "DOCKER_CONFIG": str(config)})
        assert listed.returncode == 0, listed.stderr
        report = json.loads(listed.stdout)
        assert report["queued"] == [f"{locked.host}/private/app@{pushed[locked.host]}"]
        assert report["errors"] == []
        assert "robot" not in listed.stdout + listed.stderr + refused.stderr
        assert "s3cret-pass" not in listed.stdout + listed.stderr + refused.stderr
        again = run_cli(
            ["reconcile", "--registry", locked.host], {**env, "DOCKER_CONFIG": str(config)}
        )
        assert again.returncode == 0 and "0 queued, 1 known" in again.stdout
        outside = run_cli(["reconcile", "--registry", "elsewhere.example"], env)
        assert outside.returncode == 2 and "not in SUPPLYCHAIN_REGISTRIES" in outside.stderr


def test_a_token_registry_lists_its_catalog_with_the_identity_token_of_the_docker_config(
    any_db: Database, tmp_path: Path
) -> None:
    with (
        TokenServer(tmp_path, {"bob": "t0ken-pw"}, refresh_tokens={"refresh-xyz": "bob"}) as auth,
        Registry(tmp_path / "registry", token=auth.registry_auth()) as registry,
    ):
        digest = images.push(
            small_image(tmp_path, "a"), "img", f"{registry.host}/team/app:v1", creds="bob:t0ken-pw"
        )
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"auths": {registry.host: {"identitytoken": "refresh-xyz"}}}))
        auth.requests.clear()
        credentials = DockerConfigCredentials(str(config))
        report = reconciler(any_db, tmp_path, registry.host, credentials=credentials).run()
    assert report.errors == () and report.queued == (f"{registry.host}/team/app@{digest}",)
    scopes = [r["query"]["scope"] for r in auth.requests]
    assert scopes == [["registry:catalog:*"], ["repository:team/app:pull"]]  # one token each
    assert {r["method"] for r in auth.requests} == {"POST"}  # the refresh token, as OAuth2


# -- serve: pushes made while it was down are decided, with no webhook ------------------------


@pytest.mark.e2e
def test_serve_decides_what_was_pushed_while_it_was_down_with_no_webhook(tmp_path: Path) -> None:
    build_trivy_db(tmp_path / "data" / "trivy", [URLLIB3_HIGH])
    with Registry(tmp_path / "registry") as registry:  # no notifications: no webhook ever
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_WORKERS": "1",
            }
        )
        server = Server(env, tmp_path / "before.log")  # up once: the database is made
        try:
            server.wait_ready()
        finally:
            server.stop()
        pushed = {
            images.push(small_image(tmp_path, name), "img", f"{registry.host}/team/{name}:v1")
            for name in ("one", "two", "three")
        }
        server = Server({**env, "SUPPLYCHAIN_RECONCILE_SECONDS": "3600"}, tmp_path / "after.log")
        db = Database(f"sqlite:///{tmp_path / 'data' / 'supplychain.db'}")

        def decided() -> set[str]:
            with db.session() as session:
                found = session.scalars(
                    select(Verdict.digest).where(Verdict.context == "pipeline")
                ).all()
            return {digest for digest in found if digest}

        try:
            server.wait_ready()
            wait_for(lambda: decided() == pushed, 180, lambda: server.log()[-3000:])
            with db.session() as session:
                verdicts = session.execute(
                    select(Verdict.digest, Verdict.decision).where(Verdict.context == "pipeline")
                ).all()
                deliveries = session.scalar(select(func.count()).select_from(WebhookDelivery))
        finally:
            server.stop()
            db.dispose()
    assert sorted(d for _, d in verdicts) == ["allow"] * 3  # HIGH only: the default policy allows
    assert deliveries == 0
    (line,) = [
        json.loads(line)["message"]
        for line in server.log().splitlines()
        if line.startswith("{") and "reconcile pass" in line
    ]
    assert line.startswith(
        "reconcile pass: 1 registries, 3 repositories, 3 tags: 3 queued, 0 errors"
    )
