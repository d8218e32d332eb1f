"""Our SBOM stage in the pipeline's record: the document whole with its digest, its components
in the components table, so "which images contain package X" is one query (real PostgreSQL)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.recorder import record_facts
from supplychain.evidence.sbomstore import unpack
from supplychain.interface import CatalogError, ImageTarget, Layer, PulledImage, ScanResult
from supplychain.stages.cataloger import OwnCataloger
from supplychain.stages.pipeline import Outcome
from tests.support.images import app_layout, layer_paths, layout_digest


def pulled(tag: str) -> PulledImage:
    layout = app_layout()
    layers = tuple(
        Layer(f"sha256:{p.name}", "application/vnd.oci.image.layer.v1.tar+gzip", 0, p)
        for p in layer_paths(layout, tag)
    )
    target = ImageTarget("127.0.0.1:5000", "team/app", layout_digest(layout, tag), tag)
    manifest_type = "application/vnd.oci.image.manifest.v1+json"
    return PulledImage(target, manifest_type, b"{}", b"{}", "linux/amd64", layers, layout)


def test_which_images_contain_a_package_is_one_query(db: Database, tmp_path: Path) -> None:
    cataloger = OwnCataloger(tmp_path / "sbom-cache")
    for tag in ("app", "app-deleted"):
        image = pulled(tag)
        sbom = cataloger.catalog(image)
        scan = ScanResult("trivy", "0.76.0", None, None, ())
        outcome = Outcome(image.target, image, sbom, scan, (), {})
        with db.session() as session:
            record_facts(session, outcome, job_id=None, actor="test")
    with db.session() as session:
        jinja = session.scalars(
            select(models.Image.digest)
            .join(models.Component, models.Component.image_id == models.Image.id)
            .where(models.Component.purl == "pkg:pypi/jinja2@2.10")
        ).all()
        stored = session.scalars(select(models.Scan)).all()
    assert jinja == [layout_digest(app_layout(), "app")]  # deleted from app-deleted
    for scan_row in stored:  # stored whole, compressed, with the digest of the document
        document = unpack(scan_row.sbom, scan_row.sbom_encoding)
        assert document is not None and scan_row.sbom_format == "cyclonedx-json"
        assert scan_row.sbom_encoding == "zstd" and len(scan_row.sbom or b"") < len(document) / 3
        assert scan_row.sbom_digest == "sha256:" + hashlib.sha256(document).hexdigest()


def test_a_corrupt_layer_fails_the_job_not_the_service(tmp_path: Path) -> None:
    image = pulled("app-deleted")
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    broken = replace(image, layers=(*image.layers[:-1], replace(image.layers[-1], path=corrupt)))
    with pytest.raises(CatalogError, match="corrupt"):
        OwnCataloger(tmp_path / "cache").catalog(broken)
    assert OwnCataloger(tmp_path / "cache").catalog(image).components  # still working
