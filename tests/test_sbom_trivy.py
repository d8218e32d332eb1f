"""Our SBOM against the real Trivy on the same real image (Debian bookworm + pip + npm + a layer
deleting a Python package and purging a Debian package)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sbom import ImageInfo, LayerInput, SbomResult, generate_sbom, write_cyclonedx, write_spdx
from tests.support.images import (
    PURGED_DEB_PACKAGE,
    app_layout,
    layer_paths,
    layout_digest,
)
from tests.support.tools import trivy
from tests.support.trivydb import Advisory, build_trivy_db

TAG = "app-deleted"
ADVISORIES = (
    Advisory("CVE-2099-1001", "debian 12", "zlib", "HIGH", fixed_version="1:9.9-1"),
    Advisory("CVE-2099-1002", "debian 12", "libsemanage", "LOW", fixed_version="9.9-1"),
    Advisory(
        "CVE-2018-18074",
        "pip::GitHub Security Advisory pip",
        "requests",
        "HIGH",
        vulnerable_versions=("<2.20.0",),
    ),
    Advisory(  # Jinja2 is deleted by the top layer: nobody may report it
        "CVE-2019-10906",
        "pip::GitHub Security Advisory pip",
        "jinja2",
        "HIGH",
        vulnerable_versions=("<2.10.1",),
    ),
    Advisory(
        "CVE-2020-8203",
        "npm::GitHub Security Advisory npm",
        "lodash",
        "HIGH",
        vulnerable_versions=("<4.17.19",),
    ),
)
# Differences between our purls and Trivy's, each with its reason. Empty: none are known.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _trivy(cache: Path, *args: str) -> dict[str, Any]:
    command = [trivy(), *args, "--cache-dir", str(cache), "--quiet", "--skip-version-check"]
    command += ["--offline-scan", "--skip-db-update", "--skip-java-db-update"]
    done = subprocess.run(command, capture_output=True, timeout=300, check=True)
    value: dict[str, Any] = json.loads(done.stdout)
    return value


@pytest.fixture(scope="module")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("trivy")
    build_trivy_db(cache, ADVISORIES)
    return cache


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> SbomResult:
    layout = app_layout()
    layers = [LayerInput(f"sha256:{p.name}", p) for p in layer_paths(layout, TAG)]
    info = ImageInfo("127.0.0.1/app", layout_digest(layout, TAG), TAG, "127.0.0.1/app")
    return generate_sbom(layers, info, tmp_path_factory.mktemp("sbom-cache"))


@pytest.fixture(scope="module")
def ours(result: SbomResult) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(write_cyclonedx(result))
    return document


def _purls(bom: dict[str, Any]) -> set[str]:
    return {c["purl"] for c in bom.get("components") or [] if c.get("purl")}


def _layers(bom: dict[str, Any], layer_prop: str) -> dict[str, str]:
    return {
        c["purl"]: next(p["value"] for p in c.get("properties", []) if p["name"] == layer_prop)
        for c in bom.get("components") or []
        if c.get("purl")
    }


def test_our_purls_equal_trivys(ours: dict[str, Any], trivy_cache: Path) -> None:
    layout = app_layout()
    theirs = _trivy(trivy_cache, "image", "--input", f"{layout}:{TAG}", "--format", "cyclonedx")
    ours_purls, their_purls = _purls(ours), _purls(theirs)
    differences = (ours_purls ^ their_purls) - set(KNOWN_DIFFERENCES)
    assert not differences, f"only ours: {ours_purls - their_purls}, only Trivy's: " + str(
        their_purls - ours_purls
    )
    # The deleted and purged packages are gone, the rest is there.
    names = {purl.split("/")[-1].split("@")[0].lower() for purl in ours_purls}
    assert "jinja2" not in names and PURGED_DEB_PACKAGE not in names
    assert {"requests", "urllib3", "lodash", "minimist", "bash", "libsemanage2"} <= names
    # Every package is attributed to the same layer Trivy attributes it to.
    assert _layers(ours, "supplychain:layer_digest") == _layers(
        theirs, "aquasecurity:trivy:LayerDigest"
    )


def _vulns(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"])
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    }


def test_trivy_finds_the_same_vulnerabilities_in_our_sbom(
    ours: dict[str, Any], trivy_cache: Path, tmp_path: Path
) -> None:
    layout = app_layout()
    ours_file = tmp_path / "ours.cdx.json"
    ours_file.write_text(json.dumps(ours))
    from_image = _vulns(
        _trivy(trivy_cache, "image", "--input", f"{layout}:{TAG}", "--format", "json")
    )
    from_ours = _vulns(_trivy(trivy_cache, "sbom", "--format", "json", str(ours_file)))
    assert from_ours == from_image
    assert {v[0] for v in from_ours} == {
        "CVE-2099-1001",
        "CVE-2099-1002",
        "CVE-2018-18074",
        "CVE-2020-8203",
    }


def test_trivy_reads_our_spdx_as_our_cyclonedx(
    result: SbomResult, trivy_cache: Path, tmp_path: Path
) -> None:
    """The same image in both our formats: `trivy sbom` finds the same vulnerabilities in each,
    OS ones included (Debian's advisories are matched by source package: libsemanage2 is built
    from libsemanage), and the same OS and packages."""
    cdx, spdx = tmp_path / "ours.cdx.json", tmp_path / "ours.spdx.json"
    cdx.write_bytes(write_cyclonedx(result))
    spdx.write_bytes(write_spdx(result))
    from_cdx = _trivy(trivy_cache, "sbom", "--format", "json", str(cdx))
    from_spdx = _trivy(trivy_cache, "sbom", "--format", "json", str(spdx))
    assert _vulns(from_spdx) == _vulns(from_cdx)
    assert {v[:2] for v in _vulns(from_spdx)} >= {
        ("CVE-2099-1001", "zlib1g"),
        ("CVE-2099-1002", "libsemanage2"),
        ("CVE-2018-18074", "requests"),
    }
    assert from_spdx["Metadata"]["OS"] == from_cdx["Metadata"]["OS"]
    assert from_spdx["Metadata"]["OS"]["Family"] == "debian"

    def packages(report: dict[str, Any]) -> set[tuple[str, str, str, str]]:
        return {
            (r["Class"], p["Name"], p["Version"], p.get("SrcName", ""))
            for r in report.get("Results") or []
            for p in r.get("Packages") or []
        }

    listed = ["sbom", "--format", "json", "--list-all-pkgs"]
    cdx_packages = packages(_trivy(trivy_cache, *listed, str(cdx)))
    assert packages(_trivy(trivy_cache, *listed, str(spdx))) == cdx_packages
    assert ("os-pkgs", "libsemanage2", "3.4-1+b5", "libsemanage") in cdx_packages


def test_our_spdx_states_os_source_packages_and_relationships(result: SbomResult) -> None:
    document = json.loads(write_spdx(result))
    by_id = {p["SPDXID"]: p for p in document["packages"]}
    (system,) = [p for p in by_id.values() if p["primaryPackagePurpose"] == "OPERATING-SYSTEM"]
    assert system["SPDXID"].startswith("SPDXRef-OperatingSystem-")
    assert system["name"] == "debian" and system["versionInfo"].split(".")[0] == "12"
    edges = {
        (
            r["spdxElementId"],
            r["relationshipType"],
            by_id.get(r["relatedSpdxElement"], {}).get("name"),
        )
        for r in document["relationships"]
    }
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "127.0.0.1/app") in edges
    assert ("SPDXRef-Image", "CONTAINS", "debian") in edges
    assert (system["SPDXID"], "CONTAINS", "libsemanage2") in edges
    assert ("SPDXRef-Image", "CONTAINS", "requests") in edges
    assert any(kind == "DEPENDS_ON" for _a, kind, _b in edges)
    (libsemanage,) = [p for p in by_id.values() if p["name"] == "libsemanage2"]
    assert libsemanage["sourceInfo"] == "built package from: libsemanage 3.4-1"
    assert any(
        a["comment"].startswith("supplychain:layer_digest: sha256:")
        for a in libsemanage["annotations"]
    )
