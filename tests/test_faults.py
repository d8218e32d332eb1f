"""Faults on real processes: a real registry and PostgreSQL behind a TCP proxy the test cuts,
the real Trivy, `supplychain worker` and `serve` as subprocesses.

Every pushed image ends decided and none is scanned to completion twice (scans counted per image
in the database; claims counted per (job, attempt) in job_claims).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, JobFailure, Scan
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue
from tests.conftest import PG_SERVER, new_database
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.claimers import double_claims
from tests.support.proxy import TcpProxy
from tests.support.registry import Registry
from tests.support.service import Process, Server, run_cli, service_env, wait_for
from tests.support.tokens import issue
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e

REPOSITORIES = ("team/a", "team/b", "team/c")


@dataclass
class Setup:
    """One test's parts: where things are and the environment of its service processes."""

    tmp: Path
    registry_host: str
    digest: str
    db: Database
    env: dict[str, str]
    db_proxy: TcpProxy | None

    def enqueue(self, repositories: tuple[str, ...] = REPOSITORIES) -> None:
        with self.db.session() as session:
            for repository in repositories:
                target = ImageTarget(self.registry_host, repository, self.digest, "v1")
                JobQueue(self.db).enqueue(session, "image", target)

    def states(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(Job.state).order_by(Job.id)))

    def all_done(self) -> bool:
        return all(state == "done" for state in self.states())

    def assert_scanned_once_each(self, jobs: int) -> None:
        with self.db.session() as session:
            per_image = session.execute(
                select(Scan.image_id, func.count()).group_by(Scan.image_id)
            ).all()
            assert len(per_image) == jobs and all(count == 1 for _, count in per_image)
            assert session.scalar(select(func.count()).select_from(Job)) == jobs
        assert double_claims(self.db) == 0

    def failures(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(JobFailure.reason).order_by(JobFailure.id)))


def slow_trivy(tmp: Path, sleep: str, *, once: bool = True) -> tuple[Path, Path]:
    """A trivy that writes its pid to a marker and sleeps (only the first time when ``once``)."""
    trivy = shutil.which("trivy")
    assert trivy is not None
    marker = tmp / "trivy-pid"
    script = tmp / "slow-trivy"
    guard = f'[ -e "{marker}" ] && exec "{trivy}" "$@"\n' if once else ""
    script.write_text(f'#!/bin/sh\n{guard}echo $$ > "{marker}"\n{sleep}\nexec "{trivy}" "$@"\n')
    script.chmod(0o755)
    return script, marker


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def setup(tmp: Path, *, postgres: bool, proxy_db: bool = False) -> Iterator[tuple[Setup, Registry]]:
    build_trivy_db(tmp / "trivy", [URLLIB3_HIGH])
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(Registry(tmp / "registry"))
        digest = ""
        for repository in REPOSITORIES:
            digest = images.push(images.tiny_layout(), "tiny", f"{registry.host}/{repository}:v1")
        if postgres:
            url = stack.enter_context(new_database())
        else:
            url = f"sqlite:///{tmp / 'data' / 'supplychain.db'}"
        db = Database(url)
        db.upgrade()
        stack.callback(db.dispose)
        service_url, db_proxy = url, None
        if proxy_db:
            host, port = PG_SERVER.rsplit("@", 1)[1].rsplit(":", 1)
            db_proxy = stack.enter_context(TcpProxy(host, int(port)))
            service_url = url.replace(f"{host}:{port}", db_proxy.address)
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(tmp / "data"),
                "SUPPLYCHAIN_DATABASE_URL": service_url,
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_JOB_BACKOFF_SECONDS": "1",
                "SUPPLYCHAIN_JOB_BACKOFF_MAX_SECONDS": "4",
                "SUPPLYCHAIN_JOB_MAX_ATTEMPTS": "2",
            }
        )
        yield Setup(tmp, registry.host, digest, db, env, db_proxy), registry


@pytest.mark.parametrize(("command", "postgres"), [("worker", True), ("serve", False)])
def test_sigterm_releases_leases_and_ends_trivy(
    tmp_path: Path, command: str, postgres: bool
) -> None:
    with setup(tmp_path, postgres=postgres) as (s, _registry):
        s.enqueue(REPOSITORIES[:1])
        trivy, marker = slow_trivy(tmp_path, "sleep 300")
        env = {
            **s.env,
            "SUPPLYCHAIN_TRIVY_PATH": str(trivy),
            "SUPPLYCHAIN_SHUTDOWN_GRACE_SECONDS": "2",
            "SUPPLYCHAIN_JOB_LEASE_SECONDS": "300",
            "SUPPLYCHAIN_WORKERS": "1",
        }
        first = (
            Server(env, tmp_path / "a.log")
            if command == "serve"
            else Process(["worker"], env, tmp_path / "a.log")
        )
        wait_for(marker.exists, 60, lambda: f"no scan started:\n{first.log()[-3000:]}")
        time.sleep(0.5)
        pid = int(marker.read_text())
        stopped = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=30)
        assert time.monotonic() - stopped < 15, first.log()[-3000:]
        assert not alive(pid), "the Trivy child outlived its worker"
        assert s.states() == ["queued"]
        assert s.failures() == ["released: worker shut down"]
        second = Process(["worker"], env, tmp_path / "b.log")  # trivy runs for real now
        try:
            wait_for(s.all_done, 60, lambda: f"not picked up:\n{second.log()[-3000:]}")
        finally:
            second.stop()
        s.assert_scanned_once_each(1)


def test_registry_down_jobs_wait_without_spending_attempts(tmp_path: Path) -> None:
    with setup(tmp_path, postgres=True) as (s, registry):
        proxy = TcpProxy("127.0.0.1", registry.port)
        s.registry_host = proxy.address
        s.enqueue()
        env = {**s.env, "SUPPLYCHAIN_REGISTRIES": proxy.address}
        worker = Process(["worker"], env, tmp_path / "worker.log")
        try:
            time.sleep(25)  # the registry is down (nothing listens on the proxy's port)
            assert s.states() == ["queued"] * 3, worker.log()[-3000:]
            reasons = s.failures()
            assert len(reasons) >= 6, reasons  # 2 attempts each would have failed them for good
            assert all(r.startswith("deferred: registry unavailable") for r in reasons)
            proxy.up()
            wait_for(s.all_done, 90, lambda: f"not decided:\n{worker.log()[-3000:]}")
        finally:
            worker.stop()
            proxy.down()
        s.assert_scanned_once_each(3)


def test_database_down_workers_and_heartbeat_survive(tmp_path: Path) -> None:
    with setup(tmp_path, postgres=True, proxy_db=True) as (s, _registry):
        s.enqueue(REPOSITORIES[:1])
        trivy, marker = slow_trivy(tmp_path, "sleep 25")
        env = {
            **s.env,
            "SUPPLYCHAIN_TRIVY_PATH": str(trivy),
            "SUPPLYCHAIN_JOB_LEASE_SECONDS": "45",
        }
        worker = Process(["worker"], env, tmp_path / "worker.log")
        proxy = s.db_proxy
        assert proxy is not None
        try:
            wait_for(marker.exists, 60, lambda: f"no scan started:\n{worker.log()[-3000:]}")
            proxy.down()
            time.sleep(20)
            assert worker.proc.poll() is None, worker.log()[-3000:]
            proxy.up()
            wait_for(s.all_done, 90, lambda: f"not done:\n{worker.log()[-3000:]}")
            s.enqueue(REPOSITORIES[1:2])  # the worker still claims after the outage
            wait_for(s.all_done, 60, lambda: f"second job not done:\n{worker.log()[-3000:]}")
        finally:
            worker.stop()
        assert "heartbeat failed, retrying" in worker.log()
        with s.db.session() as session:
            assert session.scalars(select(Job.attempts).order_by(Job.id)).all() == [1, 1]
        s.assert_scanned_once_each(2)


def test_stuck_stage_ends_its_attempt_and_its_trivy(tmp_path: Path) -> None:
    with setup(tmp_path, postgres=False) as (s, _registry):
        s.enqueue(REPOSITORIES[:1])
        trivy, marker = slow_trivy(tmp_path, "sleep 300")
        env = {
            **s.env,
            "SUPPLYCHAIN_TRIVY_PATH": str(trivy),
            "SUPPLYCHAIN_STAGE_DEADLINES": "scan=3",
        }
        worker = Process(["worker"], env, tmp_path / "worker.log")
        try:
            wait_for(marker.exists, 60, lambda: f"no scan started:\n{worker.log()[-3000:]}")
            pid = int(marker.read_text())
            wait_for(lambda: not alive(pid), 15, lambda: "trivy still runs past the deadline")
            wait_for(s.all_done, 60, lambda: f"not done:\n{worker.log()[-3000:]}")
        finally:
            worker.stop()
        assert s.failures() == ["stage scan made no progress within its deadline of 3s"]
        s.assert_scanned_once_each(1)
        assert not any((tmp_path / "data" / "work").iterdir())


def test_start_up_and_database_errors_name_their_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = service_env({"SUPPLYCHAIN_DATA_DIR": str(blocker / "data")})
    result = run_cli(["worker"], env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "SUPPLYCHAIN_DATA_DIR" in result.stderr and "Traceback" not in result.stderr

    with setup(tmp_path, postgres=True, proxy_db=True) as (s, _registry):
        proxy = s.db_proxy
        assert proxy is not None
        tokens = issue(s.env)
        server = Server({**s.env, "SUPPLYCHAIN_WORKERS": "0"}, tmp_path / "server.log")
        try:
            server.wait_ready()
            assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
            proxy.down()
            image = f"{s.registry_host}/team/a:v1"
            answer = requests.post(
                f"{server.url}/v1/gate",
                json={"image": image},
                headers=tokens.headers("ci"),
                timeout=30,
            )
            assert answer.status_code == 503
            assert answer.json()["error"].startswith("database unavailable")
            cli = run_cli(["gate", image, "--server", server.url], tokens.env(s.env), timeout=60)
            assert cli.returncode == 2 and "database unavailable" in cli.stdout, cli.stdout
            ready = requests.get(f"{server.url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["problems"][0].startswith("database unreachable")
            proxy.up()
        finally:
            server.stop()
        full = Server(
            {**s.env, "SUPPLYCHAIN_WORKERS": "0", "SUPPLYCHAIN_MIN_FREE_BYTES": str(2**60)},
            tmp_path / "full.log",
        )
        try:
            full.wait_ready()
            ready = requests.get(f"{full.url}/readyz", timeout=10)
            assert ready.status_code == 503
            assert any(p.startswith("disk full") for p in ready.json()["problems"])
        finally:
            full.stop()
