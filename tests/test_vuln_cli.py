"""``supplychain vulndb status|import``, ``rematch`` and ``vex upload`` as a user runs them."""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from supplychain.cli.vulndb import add_parser
from supplychain.evidence import models
from supplychain.evidence.database import Database
from tests.conftest import TOKEN
from tests.support.registry import Registry
from tests.support.trivydb import build_trivy_db_archive
from tests.test_vuln_scan import BASE_ADVISORIES, UPDATED

ERRORS: list[str] = []


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    """Run ``supplychain ARGV``; exit code and the JSON printed (errors go to ``ERRORS``)."""
    main = argparse.ArgumentParser(prog="supplychain")
    add_parser(main.add_subparsers(dest="command", required=True))
    args = main.parse_args(argv)
    code: int = args.func(args)
    out, err = capsys.readouterr()
    ERRORS[:] = [err]
    return code, json.loads(out) if out.strip() else {}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: Database, pg_url: str) -> Path:
    for name, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": pg_url,
        "WEBHOOK_TOKEN": TOKEN,
        "TRIVY_OFFLINE": "true",
        "TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
    }.items():
        monkeypatch.setenv(f"SUPPLYCHAIN_{name}", value)
    return tmp_path


def test_import_status_and_age_limit(
    env: Path, db: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, answer = run(["vulndb", "status", "--output", "json"], capsys)
    assert (code, answer["installed"]) == (2, False)
    assert "supplychain vulndb import db.tar.gz" in str(answer["advice"])  # offline here

    archive = build_trivy_db_archive(env / "db.tar.gz", BASE_ADVISORIES, UPDATED)
    code, answer = run(["vulndb", "import", str(archive), "--output", "json"], capsys)
    assert code == 0 and answer["new"] is True
    assert answer["updated_at"] == UPDATED.isoformat()
    with db.session() as session:
        (row,) = session.scalars(select(models.VulnDatabase)).all()
        assert (row.digest, row.source, row.updated_at) == (answer["digest"], "import", UPDATED)

    code, again = run(["vulndb", "import", str(archive), "--output", "json"], capsys)
    assert code == 0 and again["new"] is False and again["digest"] == answer["digest"]

    code, status = run(["vulndb", "status", "--output", "json"], capsys)
    assert code == 0 and status["digest"] == answer["digest"]
    monkeypatch.setenv("SUPPLYCHAIN_MAX_DB_AGE_HOURS", "1")  # UPDATED is long ago
    code, status = run(["vulndb", "status", "--output", "json"], capsys)
    assert code == 1 and status["max_age_hours"] == 1.0


def test_status_for_people_says_what_to_run(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPLYCHAIN_TRIVY_OFFLINE", "false")
    main = argparse.ArgumentParser(prog="supplychain")
    add_parser(main.add_subparsers(dest="command", required=True))
    args = main.parse_args(["vulndb", "status"])
    assert args.func(args) == 2
    out = capsys.readouterr().out
    assert f"no Trivy vulnerability DB in {env / 'trivy'}" in out
    assert "run `supplychain vulndb update`" in out
    assert "SUPPLYCHAIN_TRIVY_OFFLINE=true" in out  # the air-gapped way too

    archive = build_trivy_db_archive(env / "db.tar.gz", BASE_ADVISORIES, UPDATED)
    args = main.parse_args(["vulndb", "import", str(archive)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"updated at: {UPDATED.isoformat()}" in out and "new:        yes" in out


def test_a_bad_archive_is_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "junk.tar.gz").write_bytes(b"not a tar")
    code, _ = run(["vulndb", "import", str(env / "junk.tar.gz")], capsys)
    assert code == 2 and "not a readable DB archive" in ERRORS[0]


def test_rematch_with_nothing_stored(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = build_trivy_db_archive(env / "db.tar.gz", BASE_ADVISORIES, UPDATED)
    run(["vulndb", "import", str(archive), "--output", "json"], capsys)
    code, report = run(["rematch", "--all"], capsys)
    assert code == 0 and report["selected"] == 0 and report["failed"] == []


def test_vex_upload_refuses_a_document_that_is_not_vex(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "vex.json").write_text(json.dumps({"hello": "world"}))
    code, _ = run(["vex", "upload", str(env / "vex.json")], capsys)
    assert code == 2 and "neither OpenVEX" in ERRORS[0]


def push_db_artifact(registry: Registry, repository: str, archive: Path) -> None:
    """Push a DB archive as Trivy's OCI artifact, the way an organisation mirrors trivy-db."""
    base = f"http://{registry.host}/v2/{repository}"

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = requests.post(f"{base}/blobs/uploads/", timeout=10).headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry.host}{location}"
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10)
        assert done.status_code == 201
        return {"digest": digest, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.aquasec.trivy.config.v1+json",
        "config": {"mediaType": "application/vnd.aquasec.trivy.config.v1+json", **blob(b"{}")},
        "layers": [
            {
                "mediaType": "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
                **blob(archive.read_bytes()),
                "annotations": {"org.opencontainers.image.title": "db.tar.gz"},
            }
        ],
    }
    response = requests.put(
        f"{base}/manifests/2",
        data=json.dumps(manifest),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert response.status_code == 201


def test_update_from_the_organisations_oci_mirror(
    env: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = build_trivy_db_archive(env / "db.tar.gz", BASE_ADVISORIES, UPDATED)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("trivy.db")
        assert member is not None
        expected = "sha256:" + hashlib.sha256(member.read()).hexdigest()
    with Registry(env / "registry") as registry:
        push_db_artifact(registry, "mirror/trivy-db", archive)
        code, answer = run(
            [
                "vulndb",
                "update",
                "--output",
                "json",
                "--repository",
                f"{registry.host}/mirror/trivy-db:2",
            ],
            capsys,
        )
        assert code == 0 and answer["digest"] == expected and answer["new"] is True
        code, _ = run(
            ["vulndb", "update", "--repository", f"{registry.host}/mirror/absent:2"], capsys
        )
        assert code == 2 and "DB download failed" in ERRORS[0]
        assert f"from {registry.host}/mirror/absent:2" in ERRORS[0]  # what was tried
        assert "supplychain vulndb import" in ERRORS[0]  # and what to do instead
    code, status = run(["vulndb", "status", "--output", "json"], capsys)
    assert code == 0 and status["digest"] == expected  # the failed update changed nothing
    with db.session() as session:
        (row,) = session.scalars(select(models.VulnDatabase)).all()
        assert row.source == "update"
