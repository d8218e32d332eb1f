"""Trivy reads a decompressed copy of the pulled layout; its findings are those of the layout.

The equality of every finding (ids, packages, versions, severities, layer digests, secrets) with
a direct ``trivy image`` on the pulled layout is checked in tests/test_vuln_scan.py; here: the
copy is what it claims, and an image whose copy cannot stand in is scanned as pulled.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supplychain.interface import PulledImage
from supplychain.stages.localsource import LocalSource
from supplychain.stages.plainlayout import plain_layout
from supplychain.stages.scanner import TrivyRunner, TrivyScanner
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.tools import trivy
from tests.support.trivydb import build_trivy_db


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulledImage]:
    source = LocalSource(f"oci:{images.app_layout()}:app", tmp_path_factory.mktemp("work"))
    yield source.pull(source.target())


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> TrivyRunner:
    cache = tmp_path_factory.mktemp("trivy")
    build_trivy_db(cache, [URLLIB3_HIGH])
    return TrivyRunner(None, cache, offline=True, timeout=300)


def test_the_copy_holds_the_layers_as_plain_tars_named_by_their_diff_ids(
    pulled: PulledImage, tmp_path: Path
) -> None:
    digests = plain_layout(pulled, tmp_path / "plain")
    diff_ids = json.loads(pulled.config)["rootfs"]["diff_ids"]
    assert digests is not None and list(digests) == diff_ids
    assert list(digests.values()) == [layer.digest for layer in pulled.layers]
    index = json.loads((tmp_path / "plain" / "index.json").read_text())
    blobs = tmp_path / "plain" / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]] == diff_ids
    assert all(not layer["mediaType"].endswith("gzip") for layer in manifest["layers"])
    for layer in manifest["layers"]:
        path = blobs / layer["digest"][7:]
        assert path.stat().st_size == layer["size"]
        with tarfile.open(path, "r:") as tar:  # plain tar, no compression
            assert tar.next() is not None


def test_an_image_whose_layers_do_not_match_its_diff_ids_is_scanned_as_pulled(
    pulled: PulledImage, runner: TrivyRunner, tmp_path: Path
) -> None:
    config = json.loads(pulled.config)
    config["rootfs"]["diff_ids"] = list(reversed(config["rootfs"]["diff_ids"]))
    odd = dataclasses.replace(pulled, config=json.dumps(config).encode())
    assert plain_layout(odd, tmp_path / "plain") is None
    ours = {
        (f.vuln_id, f.package, f.layer_digest)
        for f in TrivyScanner(runner).scan(odd, None).findings
    }
    direct = subprocess.run(
        [
            *(trivy(), "image", "--input", str(pulled.layout_dir), "--format", "json"),
            *("--scanners", "vuln,secret", "--cache-dir", str(runner.cache_dir), "--quiet"),
            *("--cache-backend", "memory", "--skip-db-update", "--offline-scan"),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    theirs = {
        (v["VulnerabilityID"], v["PkgName"], v["Layer"]["Digest"])
        for result in json.loads(direct.stdout).get("Results") or []
        for v in result.get("Vulnerabilities") or []
    }
    assert ours == theirs == {("CVE-2019-11324", "urllib3", pulled.layers[-1].digest)}
    assert not any(p.name.startswith(".trivy-") for p in pulled.layout_dir.iterdir())
