"""The hand-built Trivy DB is accepted by the real trivy binary, offline."""

from __future__ import annotations

import json
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.trivydb import Advisory, build_trivy_db, build_trivy_db_archive

PIP = "pip::GitHub Security Advisory pip"
NPM = "npm::GitHub Security Advisory npm"
DEBIAN = "debian 12"
UPDATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

ADVISORIES = (
    Advisory(
        "CVE-2099-0001",
        PIP,
        "requests",
        "CRITICAL",
        vulnerable_versions=("<2.20.0",),
        patched_versions=("2.20.0",),
        title="requests leak",
    ),
    # Outside the installed version's range: must not be reported.
    Advisory("CVE-2099-0002", PIP, "requests", "HIGH", vulnerable_versions=(">=3.0.0",)),
    # Debian advisories are keyed by the *source* package (zlib), not the binary (zlib1g).
    Advisory("CVE-2099-0003", DEBIAN, "zlib", "HIGH", fixed_version="1:1.2.13.dfsg-2"),
    Advisory("CVE-2099-0004", DEBIAN, "zlib", "LOW", fixed_version="1:1.2.11.dfsg-1"),
    Advisory("CVE-2099-0005", DEBIAN, "zlib1g", "CRITICAL", fixed_version="1:9.9-1"),
    Advisory("CVE-2099-0006", "debian 11", "zlib", "CRITICAL", fixed_version="1:9.9-1"),
    Advisory(
        "CVE-2099-0007",
        NPM,
        "lodash",
        "MEDIUM",
        vulnerable_versions=("<4.17.21",),
        patched_versions=("4.17.21",),
    ),
    Advisory("CVE-2099-0008", PIP, "urllib3", "CRITICAL", vulnerable_versions=("<1.0",)),
)

DPKG_STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

"""

ROOTFS_FILES = {
    "etc/os-release": (
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    ),
    "etc/debian_version": "12.10\n",
    "var/lib/dpkg/status": DPKG_STATUS,
    "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n"
    ),
    "usr/lib/python3/dist-packages/urllib3-1.23.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: urllib3\nVersion: 1.23\n"
    ),
    "app/node_modules/lodash/package.json": '{"name": "lodash", "version": "4.17.15"}\n',
}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for rel, content in ROOTFS_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def trivy_rootfs(cache_dir: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "trivy",
            "rootfs",
            "--quiet",
            "--format",
            "json",
            "--scanners",
            "vuln",
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--cache-dir",
            str(cache_dir),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        vuln["VulnerabilityID"]: {"Type": result["Type"], **vuln}
        for result in report.get("Results", [])
        for vuln in result.get("Vulnerabilities") or []
    }


def scan(cache_dir: Path, target: Path) -> dict[str, dict[str, Any]]:
    proc = trivy_rootfs(cache_dir, target)
    assert proc.returncode == 0, proc.stderr
    return findings(json.loads(proc.stdout))


def test_trivy_reports_exactly_the_seeded_vulnerabilities(tmp_path: Path, rootfs: Path) -> None:
    cache = tmp_path / "cache"
    db_path = build_trivy_db(cache, ADVISORIES, UPDATED)
    assert db_path == cache / "db" / "trivy.db"
    metadata = json.loads((cache / "db" / "metadata.json").read_text())
    assert metadata["Version"] == 2
    assert metadata["UpdatedAt"] == "2025-01-02T03:04:05Z"

    found = scan(cache, rootfs)
    assert set(found) == {"CVE-2099-0001", "CVE-2099-0003", "CVE-2099-0007"}

    pip = found["CVE-2099-0001"]
    assert (pip["Type"], pip["PkgName"], pip["InstalledVersion"]) == (
        "python-pkg",
        "requests",
        "2.19.0",
    )
    assert (pip["Severity"], pip["FixedVersion"], pip["Status"]) == ("CRITICAL", "2.20.0", "fixed")
    assert pip["Title"] == "requests leak"
    assert pip["DataSource"]["ID"] == "ghsa"
    assert pip["DataSource"]["Name"] == "GitHub Security Advisory pip"
    assert pip["SeveritySource"] == "ghsa"

    deb = found["CVE-2099-0003"]
    assert (deb["Type"], deb["PkgName"], deb["InstalledVersion"]) == (
        "debian",
        "zlib1g",
        "1:1.2.13.dfsg-1",
    )
    assert (deb["Severity"], deb["FixedVersion"]) == ("HIGH", "1:1.2.13.dfsg-2")
    assert deb["DataSource"]["ID"] == "debian"

    npm = found["CVE-2099-0007"]
    assert (npm["Type"], npm["PkgName"], npm["InstalledVersion"]) == (
        "node-pkg",
        "lodash",
        "4.17.15",
    )
    assert (npm["Severity"], npm["FixedVersion"]) == ("MEDIUM", "4.17.21")


def test_db_without_meta_checksums_is_rejected(tmp_path: Path, rootfs: Path) -> None:
    cache = tmp_path / "cache"
    build_trivy_db(cache, ADVISORIES, UPDATED, checksum=False)
    proc = trivy_rootfs(cache, rootfs)
    assert proc.returncode != 0
    assert "checksum error" in proc.stderr


def test_archive_holds_a_usable_db(tmp_path: Path, rootfs: Path) -> None:
    archive = build_trivy_db_archive(tmp_path / "out" / "db.tar.gz", ADVISORIES[:1], UPDATED)
    cache_db = tmp_path / "cache" / "db"
    with tarfile.open(archive, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "trivy.db"]
        tar.extractall(cache_db, filter="data")
    assert set(scan(tmp_path / "cache", rootfs)) == {"CVE-2099-0001"}


def test_large_db_with_branch_and_overflow_pages(tmp_path: Path, rootfs: Path) -> None:
    filler = [
        Advisory(
            f"CVE-2098-{i:05d}",
            source,
            f"pkg{i:05d}",
            "LOW",
            fixed_version="9",
            vulnerable_versions=("<9",),
        )
        for i in range(1500)
        for source in (DEBIAN, PIP)
    ]
    big = Advisory(
        "CVE-2099-0009",
        DEBIAN,
        "zlib",
        "MEDIUM",
        fixed_version="1:1.2.13.dfsg-3",
        description="x" * 20_000,  # larger than a 4 KiB page: needs overflow pages
    )
    cache = tmp_path / "cache"
    db_path = build_trivy_db(cache, [*filler, big, *ADVISORIES], UPDATED)
    assert db_path.stat().st_size > 100 * 4096
    found = scan(cache, rootfs)
    assert set(found) == {"CVE-2099-0001", "CVE-2099-0003", "CVE-2099-0007", "CVE-2099-0009"}
    assert len(found["CVE-2099-0009"]["Description"]) == 20_000
