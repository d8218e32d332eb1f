"""``supplychain scan`` on the local inputs ``supplychain sbom`` takes: an OCI layout and a
``docker save``-style archive (made by skopeo), scanned by the real Trivy and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.images import app_layout, docker_archive
from tests.support.registry import free_port
from tests.support.service import run_cli, service_env
from tests.support.trivydb import build_trivy_db
from tests.test_sbom_trivy import ADVISORIES, TAG

pytestmark = pytest.mark.e2e


def findings(answer: dict[str, object]) -> set[tuple[str, str]]:
    items = answer["findings"]
    assert isinstance(items, list)
    return {(f["id"], f["package"]) for f in items}


def test_scan_reads_an_oci_layout_and_a_docker_archive(tmp_path: Path, pg_url: str) -> None:
    build_trivy_db(tmp_path / "trivy", ADVISORIES)
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "SUPPLYCHAIN_DATABASE_URL": pg_url,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
        }
    )
    layout = app_layout()
    archive = docker_archive(layout, TAG, tmp_path / "app.tar", "app:v1")
    answers = {}
    for image in (f"oci:{layout}:{TAG}", f"docker-archive:{archive}"):
        done = run_cli(["scan", image, "--output", "json"], env)
        assert done.returncode == 0, done.stdout + done.stderr  # HIGH/LOW only: allow
        answers[image] = json.loads(done.stdout)
        assert answers[image]["decision"] == "allow"
        assert answers[image]["pinned"] is None  # nothing to deploy by this name
    from_layout, from_archive = (findings(a) for a in answers.values())
    assert from_layout == from_archive
    assert {("CVE-2099-1001", "zlib1g"), ("CVE-2018-18074", "requests")} <= from_layout

    missing = run_cli(["scan", f"oci:{tmp_path / 'absent'}"], env)
    assert missing.returncode == 2 and "decision: error" in missing.stdout


def test_an_online_scan_without_a_db_says_what_to_run(tmp_path: Path, pg_url: str) -> None:
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "SUPPLYCHAIN_DATABASE_URL": pg_url,
            "TRIVY_DB_REPOSITORY": f"127.0.0.1:{free_port()}/nothing/trivy-db:2",  # unreachable
        }
    )
    done = run_cli(["scan", f"oci:{app_layout()}:{TAG}"], env)
    assert done.returncode == 2 and "decision: error" in done.stdout
    assert "no Trivy vulnerability DB installed, and Trivy's own download failed" in done.stdout
    assert "run `supplychain vulndb update`" in done.stdout
