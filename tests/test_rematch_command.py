"""``supplychain rematch`` takes the narrowed path and ends where whole-SBOM rematches end.

The same two images are scanned into two databases with the same DB; the DB then changes (a new
CRITICAL PyPI advisory, a raised severity on another, a Debian advisory on source package
``bash``). The command, run as a user runs it on PostgreSQL, matches the Debian image whole and the
other one for its changed language packages only (one batched Trivy run); the reference, on
SQLite, rematches every SBOM whole with one ``trivy sbom`` each. Findings, verdict changes and
gate answers must be the same. Real parts: distribution registry, PostgreSQL, SQLite, Trivy.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from supplychain.cli.vulndb import add_parser
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.rematch.run import Rematcher, TrivySbomMatcher, select_scans
from supplychain.service import Service, build_service
from tests.conftest import make_settings
from tests.support.trivydb import Advisory
from tests.test_vuln_rematch import REPO, Pushed, process, pushed
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

__all__ = ["pushed"]  # the module-scoped registry fixture

CHANGED = (
    *BASE_ADVISORIES,
    NEW_ADVISORY,  # requests 2.19.0 in the app image: allow → deny
    replace(BASE_ADVISORIES[2], severity="CRITICAL"),  # urllib3, in both images
    Advisory("CVE-2099-9999", "debian 12", "bash", "CRITICAL", fixed_version="9.9"),
)


def facts(db: Database) -> dict[str, object]:
    """What a user checks after a rematch, keyed by image digest (ids differ between DBs)."""
    with db.session() as session:
        digest = {i: d for i, d in session.execute(select(models.Image.id, models.Image.digest))}
        findings = sorted(
            (
                digest[f.image_id],
                f.vuln_id,
                f.package,
                f.installed,
                f.severity,
                f.fixed,
                f.layer_digest,
                f.status,
            )
            for f in session.scalars(select(models.Finding))
        )
        changes = sorted(
            (
                digest[c.image_id],
                c.previous_decision,
                c.decision,
                c.revocation,
                tuple(c.added),
                tuple(c.removed),
            )
            for c in session.scalars(select(models.VerdictChange))
        )
        latest = sorted(
            (digest[s.image_id], s.db_digest) for s in session.scalars(select(models.Scan))
        )
    return {"findings": findings, "changes": changes, "scans": latest}


def scanned(tmp_path: Path, url: str, pushed: Pushed) -> Service:
    settings = make_settings(tmp_path, url, registries=pushed.registry.host, trivy_timeout="300")
    service = build_service(settings)
    process(service, pushed.app, "app")
    process(service, pushed.tiny, "tiny")
    return service


def test_the_command_narrows_and_equals_whole_sbom_rematches(
    db: Database,
    pg_url: str,
    pushed: Pushed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    reference = Database(f"sqlite:///{tmp_path / 'whole.db'}")
    reference.upgrade()
    narrowed = scanned(tmp_path, pg_url, pushed)
    whole = scanned(tmp_path, reference.url, pushed)
    (tmp_path / "new").mkdir()
    new = install_db(tmp_path / "trivy", CHANGED, tmp_path / "new").current()
    assert new is not None

    for name, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": pg_url,
        "TRIVY_OFFLINE": "true",
        "TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
        "REGISTRIES": pushed.registry.host,
    }.items():
        monkeypatch.setenv(f"SUPPLYCHAIN_{name}", value)
    main = argparse.ArgumentParser(prog="supplychain")
    add_parser(main.add_subparsers(dest="command", required=True))
    args = main.parse_args(["rematch"])
    code = args.func(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # a revocation happened
    assert (report["selected"], report["rematched"], report["advanced"]) == (2, 2, 0)
    assert report["whole"] == 1  # the Debian image; the other by its changed PyPI packages
    assert (report["changed"], report["revocations"], report["failed"]) == (2, 2, [])

    with reference.session() as session:
        scan_ids = select_scans(session)
    rematcher = Rematcher(reference, TrivySbomMatcher(whole.trivy), whole.decider)
    assert rematcher.run(scan_ids).revocations == 2

    got, expected = facts(narrowed.db), facts(reference)
    assert got == expected
    vulns = {row[1:3] for row in got["findings"]}  # type: ignore[attr-defined]
    assert {("CVE-2018-18074", "requests"), ("CVE-2099-9999", "bash")} <= vulns
    assert {s[1] for s in got["scans"]} == {new.digest}  # type: ignore[attr-defined]
    for digest in (pushed.app, pushed.tiny):
        pinned = f"{pushed.registry.host}/{REPO}@{digest}"
        assert narrowed.gate.decide(pinned).decision == "deny"
        assert narrowed.gate.decide(pinned).reasons == whole.gate.decide(pinned).reasons
    narrowed.db.dispose()
    whole.db.dispose()
    reference.dispose()
