"""Hostile image manifests and configs pushed to the real registry: a clear reason, never allow.

(A manifest over our 4 MiB cap cannot be pushed to distribution, which refuses it itself.)

Each case is real bytes PUT to Debian's distribution registry; a real worker (in this process)
processes it and the gate answers. After every case a clean image is still decided: the service
is up. Runs on PostgreSQL and on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, Scan
from supplychain.mediatypes import OCI_MANIFEST
from supplychain.service import Service, build_service
from tests.conftest import make_settings
from tests.support import images
from tests.support.hostile import database_url
from tests.support.registry import Registry
from tests.test_vuln_scan import BASE_ADVISORIES, install_db

REPO = "team/hostile"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Env:
    registry: Registry
    service: Service
    clean: str

    def blob(self, data: bytes) -> dict[str, Any]:
        return self.registry.push_blob(REPO, data)

    def manifest(self, tag: str, config: dict[str, Any], layers: list[Any], **extra: Any) -> str:
        document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config}
        return self.registry.put_manifest(
            REPO, tag, document | {"layers": layers} | extra, OCI_MANIFEST
        )

    def decide(self, tag: str) -> tuple[str, tuple[str, ...], str | None]:
        """Gate, let the worker run what it queued, gate again: (decision, reasons, job error)."""
        ref = f"{self.registry.host}/{REPO}:{tag}"
        self.service.gate.decide(ref)
        worker = self.service.worker("test")
        while worker.run_once():
            pass
        answer = self.service.gate.decide(ref)
        with self.service.db.session() as session:
            error = session.scalars(
                select(Job.last_error).where(Job.digest == answer.digest)
            ).first()
        return answer.decision, answer.reasons, error

    def still_up(self) -> None:
        decision, reasons, _ = self.decide("clean")
        assert decision == "allow", reasons


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with ExitStack() as stack:
        registry = stack.enter_context(Registry(root / "registry"))
        url = stack.enter_context(database_url(request.param, root))
        migrated = Database(url)
        migrated.upgrade()  # SQLite is new; on PostgreSQL, already at head: nothing to do
        migrated.dispose()
        clean = images.push(images.tiny_layout(), "tiny", f"{registry.host}/{REPO}:clean")
        install_db(root / "trivy", BASE_ADVISORIES, root)
        settings = make_settings(
            root,
            url,
            registries=registry.host,
            trivy_cache_dir=str(root / "trivy"),
            job_max_attempts="1",
        )
        service = build_service(settings)
        stack.callback(service.db.dispose)
        yield Env(registry, service, clean)


def _not_allowed(decision: str, reasons: tuple[str, ...], error: str | None, *words: str) -> None:
    assert decision != "allow"
    said = " ".join(reasons) + " " + (error or "")
    for word in words:
        assert word in said, said


def test_a_config_that_is_not_json(env: Env) -> None:
    config = {"mediaType": CONFIG, **env.blob(b"\x00\xffnot json at all{")}
    layer = {"mediaType": LAYER, **env.blob(images.read_blob(images.tiny_layout(), _layer()))}
    env.manifest("bad-config", config, [layer])
    decision, reasons, error = env.decide("bad-config")
    _not_allowed(decision, reasons, error, "config")
    env.still_up()


def test_a_layer_whose_stated_size_lies(env: Env) -> None:
    config = {"mediaType": CONFIG, **env.blob(b'{"architecture":"amd64","os":"linux"}')}
    real = env.blob(images.read_blob(images.tiny_layout(), _layer()))
    layer = {"mediaType": LAYER, "digest": real["digest"], "size": real["size"] + 1000}
    digest = env.manifest("size-lie", config, [layer])
    decision, reasons, error = env.decide("size-lie")
    _not_allowed(decision, reasons, error)
    assert error is not None
    with env.service.db.session() as session:
        scans = session.scalars(
            select(Scan.id).join(Scan.image).where(Scan.image.has(digest=digest))
        )
        assert list(scans) == []  # nothing recorded as if scanned
    env.still_up()


def test_more_layers_than_the_limit(env: Env) -> None:
    config = {"mediaType": CONFIG, **env.blob(b'{"architecture":"amd64","os":"linux"}')}
    layer = {"mediaType": LAYER, **env.blob(images.read_blob(images.tiny_layout(), _layer()))}
    env.manifest("many-layers", config, [layer] * 1001)
    decision, reasons, error = env.decide("many-layers")
    _not_allowed(decision, reasons, error, "layers")
    env.still_up()


def _layer() -> str:
    (layer,) = images.manifest(images.tiny_layout(), "tiny")["layers"]
    return str(layer["digest"])
