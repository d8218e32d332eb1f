"""Image indexes built to fool the gate, pushed to the real registry: every one is denied.

The vulnerable image (``app``: CRITICAL CVE-2018-18074) and a clean one (``base``) are pushed to
Debian's distribution registry; hostile indexes are PUT beside them. A real worker (real Trivy,
real DB) expands and scans; the gate answers. Each case runs on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Image, IndexEntry, Job
from supplychain.mediatypes import OCI_INDEX, OCI_MANIFEST
from supplychain.service import Service, build_service
from tests.conftest import make_settings
from tests.support import images
from tests.support.hostile import database_url
from tests.support.registry import Registry
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

REPO = "team/multi"
AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64"}
UNKNOWN = {"os": "unknown", "architecture": "unknown"}
IN_TOTO = "application/vnd.in-toto+json"


@dataclass
class Env:
    registry: Registry
    service: Service
    app: dict[str, Any]
    base: dict[str, Any]

    def put(self, tag: str, document: dict[str, Any], media_type: str = OCI_INDEX) -> str:
        return self.registry.put_manifest(REPO, tag, document, media_type)

    def blob(self, data: bytes) -> dict[str, Any]:
        return self.registry.push_blob(REPO, data)

    def gate(self, tag: str, platform: str | None = None) -> tuple[str, tuple[str, ...]]:
        """Ask, let the worker do what the gate queued, ask again."""
        ref = f"{self.registry.host}/{REPO}:{tag}"
        self.service.gate.decide(ref, platform=platform)
        worker = self.service.worker("test")
        while worker.run_once():
            pass
        answer = self.service.gate.decide(ref, platform=platform)
        return answer.decision, answer.reasons


def entry(child: dict[str, Any], platform: dict[str, str] | None, **annotations: str) -> Any:
    item = {"mediaType": child["mediaType"], "digest": child["digest"], "size": child["size"]}
    if platform is not None:
        item["platform"] = platform
    if annotations:
        item["annotations"] = annotations
    return item


def index(*entries: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}


def described(data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp(f"index-attacks-{request.param}")
    with ExitStack() as stack:
        registry = stack.enter_context(Registry(root / "registry"))
        url = stack.enter_context(database_url(request.param, root))
        migrated = Database(url)
        migrated.upgrade()  # SQLite is new; on PostgreSQL, already at head: nothing to do
        migrated.dispose()
        layout = images.app_layout()
        digests = {}
        for tag in ("app", "base"):
            digests[tag] = images.push(layout, tag, f"{registry.host}/{REPO}:{tag}")
        install_db(root / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), root)
        settings = make_settings(
            root, url, registries=registry.host, trivy_cache_dir=str(root / "trivy")
        )
        service = build_service(settings)
        stack.callback(service.db.dispose)

        def child(tag: str) -> dict[str, Any]:
            data = images.read_blob(layout, digests[tag])
            return described(data, OCI_MANIFEST)

        yield Env(registry, service, child("app"), child("base"))


def test_the_honest_index_is_denied_for_its_vulnerable_platform(env: Env) -> None:
    env.put("honest", index(entry(env.app, AMD64), entry(env.base, ARM64)))
    decision, reasons = env.gate("honest")
    assert decision == "deny"
    assert any(r.startswith("linux/amd64: CRITICAL CVE-2018-18074") for r in reasons)
    assert env.gate("honest", "linux/arm64")[0] == "allow"


def test_another_index_listing_the_same_child_does_not_steal_it(env: Env) -> None:
    env.put("victim", index(entry(env.app, AMD64), entry(env.base, ARM64)))
    assert env.gate("victim")[0] == "deny"
    env.put("thief", index(entry(env.app, AMD64)))
    assert env.gate("thief")[0] == "deny"
    env.put("thief2", index(entry(env.base, ARM64)))
    assert env.gate("thief2")[0] == "allow"
    decision, reasons = env.gate("victim")  # still decided from its own entries
    assert decision == "deny"
    assert any("CVE-2018-18074" in r for r in reasons)


def test_an_attestation_annotation_does_not_hide_a_platform_image(env: Env) -> None:
    hidden = entry(env.app, AMD64, **{"vnd.docker.reference.type": "attestation-manifest"})
    env.put("annotated", index(hidden, entry(env.base, ARM64)))
    decision, reasons = env.gate("annotated")
    assert decision == "deny"
    assert any(r.startswith("linux/amd64: CRITICAL CVE-2018-18074") for r in reasons)


def test_an_attestation_by_buildkits_rules_whose_content_is_an_image_is_decided(env: Env) -> None:
    disguised = entry(
        env.app,
        UNKNOWN,
        **{
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": env.base["digest"],
        },
    )
    env.put("disguised", index(entry(env.base, ARM64), disguised))
    decision, reasons = env.gate("disguised")
    assert decision == "deny"
    assert any("CVE-2018-18074" in r for r in reasons)


def test_a_real_attestation_manifest_is_recorded_not_scanned(env: Env) -> None:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **env.blob(config)},
        "layers": [{"mediaType": IN_TOTO, **env.blob(statement)}],
    }
    digest = env.put("attestation-manifest", manifest, OCI_MANIFEST)
    body = json.dumps(manifest).encode()
    attestation = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}
    labelled = entry(
        attestation,
        UNKNOWN,
        **{
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": env.base["digest"],
        },
    )
    index_digest = env.put("attested", index(entry(env.base, ARM64), labelled))
    assert env.gate("attested") == ("allow", ("linux/arm64: no finding of severity CRITICAL",))
    with env.service.db.session() as session:
        kinds = session.execute(
            select(IndexEntry.digest, IndexEntry.kind)
            .join(Image, Image.id == IndexEntry.index_id)
            .where(Image.digest == index_digest)
        ).all()
        assert dict(kinds) == {env.base["digest"]: "image", digest: "attestation"}
        assert session.scalar(select(func.count()).where(Job.digest == digest)) == 0


def test_a_vulnerable_image_inside_a_nested_index_is_found(env: Env) -> None:
    inner = index(entry(env.app, AMD64))
    inner_digest = env.put("inner", inner)
    nested = described(json.dumps(inner).encode(), OCI_INDEX)
    assert nested["digest"] == inner_digest
    env.put("outer", index(nested, entry(env.base, ARM64)))
    decision, reasons = env.gate("outer")
    assert decision == "deny"
    assert any("CVE-2018-18074" in r for r in reasons)
    assert env.gate("outer", "linux/amd64")[0] == "deny"
    assert env.gate("outer", "linux/arm64")[0] == "allow"


def test_indexes_nested_deeper_than_the_limit_are_denied(env: Env) -> None:
    level = index(entry(env.base, ARM64))
    for depth in range(6):
        digest_bytes = json.dumps(level).encode()
        env.put(f"depth{depth}", level)
        level = index(described(digest_bytes, OCI_INDEX))
    env.put("deep", level)
    decision, reasons = env.gate("deep")
    assert decision == "deny"
    assert any("nested deeper than 4" in r for r in reasons)


def test_an_index_over_the_entry_limit_is_denied_without_fan_out(env: Env) -> None:
    many = [entry(env.base, ARM64) for _ in range(10_000)]
    digest = env.put("huge", index(*many))
    decision, reasons = env.gate("huge")
    assert decision == "deny"
    assert reasons == (
        f"image index {digest}: image index lists 10000 entries, more than the limit of 256",
    )
    with env.service.db.session() as session:
        (row,) = session.scalars(select(Image).where(Image.digest == digest))
        entries = session.scalar(select(func.count()).where(IndexEntry.index_id == row.id))
        jobs = session.scalar(select(func.count()).where(Job.digest == digest))
        assert (entries, jobs) == (0, 1)


def test_a_child_missing_at_the_registry_is_a_deny(env: Env) -> None:
    tiny = images.tiny_layout()
    gone = images.push(tiny, "tiny", f"{env.registry.host}/{REPO}:gone")
    child = described(images.read_blob(tiny, gone), OCI_MANIFEST)
    env.put("orphaned", index(entry(env.base, ARM64), entry(child, AMD64)))
    deleted = requests.delete(f"{env.registry.url}/v2/{REPO}/manifests/{gone}", timeout=30)
    assert deleted.status_code == 202, deleted.text
    decision, reasons = env.gate("orphaned")
    assert decision == "deny"
    assert any(f"child {gone} is missing at the registry" in r for r in reasons)
