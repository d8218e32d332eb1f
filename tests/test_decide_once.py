"""Pipeline, gate and rematch give the same verdict by construction: one decision function.

One image (``app``: CRITICAL CVE-2018-18074 in requests, GHSA-x84v-xcm2-53pg its alias) on the
real registry, real Trivy and PostgreSQL. VEX says the image is not affected: uploaded by the
CVE id, uploaded by the alias only, or carried by the image as a signed attestation. The verdict
the worker records, the gate's answer and the rematch verdict must all be the same, and a rematch
against the same DB must record no change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from supplychain.decide.vex import record_vex
from supplychain.evidence.database import Database
from supplychain.evidence.models import Finding, Verdict, VerdictChange, VexStatement
from supplychain.interface import ImageTarget
from supplychain.rematch.run import Rematcher, TrivySbomMatcher, select_scans
from supplychain.service import Service, build_service
from supplychain.signatures import KeyFileSigner, attest_image, generate_key, public_pem
from supplychain.signatures.statements import OPENVEX, statement
from supplychain.signatures.storage import SignatureStore
from tests.conftest import make_settings
from tests.support import images
from tests.support.registry import Registry
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

REPO = "team/app"
ALIAS = "GHSA-x84v-xcm2-53pg"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("decide-once") / "registry") as registry:
        yield registry


def openvex(digest: str, vuln: str) -> bytes:
    return json.dumps(
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": f"https://example.test/vex/{vuln}",
            "author": "security@example.test",
            "timestamp": "2026-11-20T00:00:00Z",
            "version": 1,
            "statements": [
                {
                    "vulnerability": {"name": vuln},
                    "products": [{"@id": f"pkg:oci/app@{digest.replace(':', '%3A')}"}],
                    "status": "not_affected",
                    "justification": "vulnerable_code_not_in_execute_path",
                }
            ],
        }
    ).encode()


def three_verdicts(service: Service, target: ImageTarget) -> tuple[str, str, str]:
    """(recorded by the worker, answered by the gate, recorded by a rematch)."""
    with service.db.session() as session:
        service.queue.enqueue(session, "image", target)
    assert service.worker("test").run_once()
    gate = service.gate.decide(target.pinned).decision
    with service.db.session() as session:
        scan_ids = select_scans(session)
    report = Rematcher(service.db, TrivySbomMatcher(service.trivy), service.decider).run(scan_ids)
    assert report.rematched == 1 and not report.failed
    with service.db.session() as session:

        def recorded(context: str) -> str:
            row = session.scalars(
                select(Verdict.decision)
                .where(Verdict.context == context)
                .order_by(Verdict.id.desc())
                .limit(1)
            ).one()
            return str(row)

        changes = session.scalar(select(func.count()).select_from(VerdictChange))
        assert changes == 0  # same facts, same DB: no spurious change
        return recorded("pipeline"), gate, recorded("rematch")


def make(tmp_path: Path, pg_url: str, registry: Registry, **overrides: str) -> Service:
    alias = replace(NEW_ADVISORY, vendor_ids=(ALIAS,))
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, alias), tmp_path)
    settings = make_settings(tmp_path, pg_url, registries=registry.host, **overrides)
    return build_service(settings)


def test_without_vex_all_three_deny(
    db: Database, pg_url: str, registry: Registry, tmp_path: Path
) -> None:
    digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
    service = make(tmp_path, pg_url, registry)
    target = ImageTarget(registry.host, REPO, digest, "app")
    assert three_verdicts(service, target) == ("deny", "deny", "deny")
    with db.session() as session:
        aliases = session.scalars(
            select(Finding.aliases).where(Finding.vuln_id == "CVE-2018-18074")
        ).one()
        assert aliases == [ALIAS]  # Trivy reported the alias; the test below relies on it


@pytest.mark.parametrize("vuln", ["CVE-2018-18074", ALIAS])
def test_uploaded_vex_by_id_or_alias_only(
    db: Database, pg_url: str, registry: Registry, tmp_path: Path, vuln: str
) -> None:
    digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
    service = make(tmp_path, pg_url, registry)
    with db.session() as session:
        assert record_vex(session, openvex(digest, vuln), source="upload") == 1
    target = ImageTarget(registry.host, REPO, digest, "app")
    assert three_verdicts(service, target) == ("allow", "allow", "allow")


def test_attested_vex_decides_everywhere(
    db: Database, pg_url: str, registry: Registry, tmp_path: Path
) -> None:
    digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
    key = generate_key()
    (tmp_path / "ci.pub").write_bytes(public_pem(key.public_key()))
    service = make(tmp_path, pg_url, registry, verify_keys=str(tmp_path / "ci.pub"))
    target = ImageTarget(registry.host, REPO, digest, "app")
    claim = statement(target, OPENVEX, json.loads(openvex(digest, ALIAS)))
    attest_image(SignatureStore(service.client), target, KeyFileSigner(key), claim, OPENVEX)
    assert three_verdicts(service, target) == ("allow", "allow", "allow")
    with db.session() as session:
        stored = session.scalars(select(VexStatement.source)).all()
    assert stored == ["attestation"]
