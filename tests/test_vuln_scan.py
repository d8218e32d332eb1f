"""Scanning with the real Trivy on a real image and a real DB the test builds; failure modes.

The image is pushed to Debian's distribution registry and pulled back by digest with our client;
Trivy reads the DB from the shared store (:mod:`supplychain.stages.vulndb`), installed from an
archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from supplychain.interface import ImageTarget, PulledImage, ScanError
from supplychain.registry import BlobCache, RegistryClient
from supplychain.stages.children import CHILDREN
from supplychain.stages.scanner import (
    TrivyCataloger,
    TrivyFinding,
    TrivyRunner,
    TrivyScanner,
    _go_env,
)
from supplychain.stages.source import RegistrySource
from supplychain.stages.vulndb import VulnDbError, VulnDbStore
from tests.support import images
from tests.support.registry import Registry
from tests.support.tools import trivy
from tests.support.trivydb import Advisory, build_trivy_db, build_trivy_db_archive

PIP = "pip::GitHub Security Advisory pip"
NPM = "npm::GitHub Security Advisory npm"
UPDATED = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
REPO = "team/app"

BASE_ADVISORIES = (
    Advisory("CVE-2023-45853", "debian 12", "zlib", "HIGH", fixed_version="1:1.2.13.dfsg-2"),
    Advisory(
        "CVE-2020-8203",
        NPM,
        "lodash",
        "MEDIUM",
        vulnerable_versions=("<4.17.19",),
        patched_versions=("4.17.19",),
    ),
    Advisory(
        "CVE-2019-11324",
        PIP,
        "urllib3",
        "HIGH",
        vulnerable_versions=("<1.24.2",),
        patched_versions=("1.24.2",),
    ),
    # Outside the installed version's range: never reported.
    Advisory("CVE-2099-0002", PIP, "requests", "CRITICAL", vulnerable_versions=(">=3.0.0",)),
)
NEW_ADVISORY = Advisory(
    "CVE-2018-18074",
    PIP,
    "requests",
    "CRITICAL",
    vulnerable_versions=("<2.20.0",),
    patched_versions=("2.20.0",),
    title="requests sends Authorization headers on redirect",
)
GITHUB_TOKEN = "ghp_" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc8"


def trivy_version() -> str:
    out = subprocess.run([trivy(), "version", "--format", "json"], capture_output=True, check=True)
    return str(json.loads(out.stdout)["Version"])


def install_db(store_root: Path, advisories: tuple[Advisory, ...], tmp: Path) -> VulnDbStore:
    """Install a DB of ``advisories`` into the store at ``store_root`` from an archive."""
    runner = TrivyRunner(None, store_root, offline=True, timeout=120)
    store = VulnDbStore(store_root, runner)
    store.import_archive(build_trivy_db_archive(tmp / "db.tar.gz", advisories, UPDATED))
    return store


def direct_trivy(layout: Path, snapshot: Path) -> dict[str, Any]:
    """``trivy image`` run directly (not through our code) with the same DB."""
    flags = ["--skip-db-update", "--skip-java-db-update", "--offline-scan", "--quiet"]
    out = subprocess.run(
        [
            *(trivy(), "image", "--input", str(layout), "--format", "json"),
            *("--scanners", "vuln,secret", "--cache-dir", str(snapshot)),
            *("--cache-backend", "memory", *flags),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def report_rows(report: dict[str, Any]) -> set[tuple[object, ...]]:
    """What a user reads off a Trivy report, one row per vulnerability or secret."""
    rows: set[tuple[object, ...]] = set()
    for result in report.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            rows.add(
                (
                    v["VulnerabilityID"],
                    v["PkgName"],
                    v["PkgIdentifier"]["PURL"],
                    v["InstalledVersion"],
                    v.get("FixedVersion") or None,
                    v["Severity"],
                    v.get("Status"),
                    v["DataSource"]["ID"],
                    v["Layer"]["Digest"],
                )
            )
        for s in result.get("Secrets") or []:
            rows.add(
                (f"secret:{s['RuleID']}", result["Target"], s["Severity"], s["Layer"]["Digest"])
            )
    return rows


def finding_rows(findings: Any) -> set[tuple[object, ...]]:
    rows: set[tuple[object, ...]] = set()
    for f in findings:
        if f.kind == "secret":
            rows.add((f.vuln_id, f.package, f.severity, f.layer_digest))
        else:
            rows.add(
                (
                    f.vuln_id,
                    f.package,
                    f.purl,
                    f.installed,
                    f.fixed,
                    f.severity,
                    f.status,
                    f.data_source,
                    f.layer_digest,
                )
            )
    return rows


def secret_layout(root: Path) -> Path:
    """A one-layer OCI layout whose layer holds a GitHub token in a config file."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = f"[github]\ntoken = {GITHUB_TOKEN}\n".encode()
        info = tarfile.TarInfo("app/settings.ini")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{hashlib.sha256(raw.getvalue()).hexdigest()}"],
            },
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": images.OCI_MANIFEST,
                "digest": blob(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "secret"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulledImage]:
    """The app image, pushed to a real registry and pulled back by digest with our client."""
    root = tmp_path_factory.mktemp("vuln-scan")
    with Registry(root / "registry") as registry:
        digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
        client = RegistryClient(
            frozenset({registry.host}), frozenset(), BlobCache(root / "blobs", 1 << 32)
        )
        yield RegistrySource(client, root / "work").pull(
            ImageTarget(registry.host, REPO, digest, "app")
        )


def test_findings_equal_trivy_image_run_directly_with_the_same_db(
    pulled: PulledImage, tmp_path: Path
) -> None:
    store = install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
    current = store.current()
    assert current is not None
    runner = TrivyRunner(None, tmp_path / "trivy", offline=True, timeout=300)
    result = TrivyScanner(runner).scan(pulled, TrivyCataloger(runner).catalog(pulled))

    expected = report_rows(direct_trivy(pulled.layout_dir, current.path))
    assert finding_rows(result.findings) == expected
    ids = {(f.vuln_id, f.package, f.installed, f.severity) for f in result.findings}
    assert ids == {
        ("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", "HIGH"),
        ("CVE-2020-8203", "lodash", "4.17.15", "MEDIUM"),
        ("CVE-2019-11324", "urllib3", "1.23", "HIGH"),
        ("CVE-2018-18074", "requests", "2.19.0", "CRITICAL"),
    }
    requests_finding = next(f for f in result.findings if f.package == "requests")
    assert isinstance(requests_finding, TrivyFinding)
    assert requests_finding.fixed == "2.20.0" and requests_finding.data_source == "ghsa"
    assert dict(requests_finding.vendor_severity) == {"ghsa": "CRITICAL"}
    assert requests_finding.layer_digest == pulled.layers[-1].digest
    # Provenance: the binary's version, the DB's UpdatedAt and the digest of the file it read.
    assert result.scanner_version == trivy_version()
    # read from the report; one that states none (or a bad one) gets `trivy version`'s
    for report in ({}, {"Trivy": {"Version": "0.76.0\x1b[2J"}}, {"Trivy": "0.1"}):
        assert runner._reported_version(report) == trivy_version()
    assert result.db_updated_at == UPDATED
    db_file = current.path / "db" / "trivy.db"
    assert result.db_digest == "sha256:" + hashlib.sha256(db_file.read_bytes()).hexdigest()


def test_rematching_the_stored_sbom_finds_what_the_image_scan_found(
    pulled: PulledImage, tmp_path: Path
) -> None:
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
    runner = TrivyRunner(None, tmp_path / "trivy", offline=True, timeout=300)
    sbom = TrivyCataloger(runner).catalog(pulled)
    from_image = TrivyScanner(runner).scan(pulled, sbom)
    from_sbom = runner.scan_sbom(sbom.document)
    assert finding_rows(from_sbom.findings) == finding_rows(from_image.findings)
    assert len(from_sbom.findings) == 4
    assert from_sbom.db_digest == from_image.db_digest


def test_secrets_in_layers_are_findings(tmp_path: Path) -> None:
    layout = secret_layout(tmp_path / "oci")
    store = install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    current = store.current()
    assert current is not None
    runner = TrivyRunner(None, tmp_path / "trivy", offline=True, timeout=300)
    image = PulledImage(
        ImageTarget("example.test", "x", "sha256:" + "0" * 64), "", b"", b"", None, (), layout
    )
    result = TrivyScanner(runner).scan(image, None)  # type: ignore[arg-type]
    (secret,) = result.findings
    assert isinstance(secret, TrivyFinding)
    assert secret.kind == "secret"
    assert secret.vuln_id == "secret:github-pat" and secret.package == "/app/settings.ini"
    assert secret.severity == "CRITICAL"
    assert finding_rows(result.findings) == report_rows(direct_trivy(layout, current.path))
    assert GITHUB_TOKEN not in repr(result.findings)


# -- failure modes: the real binary, each failing its own way --------------------------------


def test_missing_trivy_binary_is_a_scan_error(pulled: PulledImage, tmp_path: Path) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    runner = TrivyRunner(
        str(tmp_path / "no" / "trivy"), tmp_path / "trivy", offline=True, timeout=60
    )
    with pytest.raises(ScanError, match="not an executable file"):
        TrivyScanner(runner).scan(pulled, None)  # type: ignore[arg-type]


def test_trivy_timing_out_is_a_scan_error(pulled: PulledImage, tmp_path: Path) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    runner = TrivyRunner(None, tmp_path / "trivy", offline=True, timeout=0.001)
    with pytest.raises(ScanError, match=r"timed out after 0\.001s"):
        TrivyScanner(runner).scan(pulled, None)  # type: ignore[arg-type]


def test_corrupt_db_is_a_scan_error(pulled: PulledImage, tmp_path: Path) -> None:
    db_file = build_trivy_db(tmp_path / "trivy", BASE_ADVISORIES, UPDATED)
    data = bytearray(db_file.read_bytes())
    data[4096 * 2 :] = b"\xff" * (len(data) - 4096 * 2)  # every page past the meta pages
    db_file.write_bytes(bytes(data))
    runner = TrivyRunner(None, tmp_path / "trivy", offline=True, timeout=60)
    with pytest.raises(ScanError, match="trivy exited with"):
        TrivyScanner(runner).scan(pulled, None)  # type: ignore[arg-type]


def test_missing_db_is_a_scan_error_not_an_empty_scan(pulled: PulledImage, tmp_path: Path) -> None:
    runner = TrivyRunner(None, tmp_path / "no-db", offline=True, timeout=60)
    with pytest.raises(ScanError, match=r"no Trivy vulnerability DB .*vulndb import"):
        TrivyScanner(runner).scan(pulled, None)  # type: ignore[arg-type]


# -- the shared DB store ---------------------------------------------------------------------


def test_store_swaps_versions_atomically_and_refuses_a_corrupt_db(tmp_path: Path) -> None:
    root = tmp_path / "trivy"
    store = install_db(root, BASE_ADVISORIES, tmp_path / "a")
    first = store.current()
    assert first is not None and first.updated_at == UPDATED
    runner = TrivyRunner(None, root, offline=True, timeout=60)
    snapshot = runner.snapshot()  # what a scan under way reads
    assert snapshot == first.path

    (tmp_path / "b").mkdir()
    second = store.import_archive(
        build_trivy_db_archive(tmp_path / "b" / "db.tar.gz", (*BASE_ADVISORIES, NEW_ADVISORY))
    )
    assert second.digest != first.digest and store.current() == second
    assert runner.snapshot() == second.path  # new scans read the new DB …
    assert (snapshot / "db" / "trivy.db").is_file()  # … the one under way keeps its own
    assert runner.db_info(snapshot)[1] == first.digest

    corrupt = tmp_path / "corrupt"
    build_trivy_db(corrupt, BASE_ADVISORIES, checksum=False)  # Go's bbolt refuses this file
    with tarfile.open(tmp_path / "corrupt.tar.gz", "w:gz") as tar:
        for name in ("trivy.db", "metadata.json"):
            tar.add(corrupt / "db" / name, arcname=name)
    with pytest.raises(VulnDbError, match="trivy cannot use the new DB"):
        store.import_archive(tmp_path / "corrupt.tar.gz")
    assert store.current() == second
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        link = tarfile.TarInfo("trivy.db")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    with pytest.raises(VulnDbError, match="not a regular file"):
        store.import_archive(tmp_path / "evil.tar")
    assert store.current() == second


def test_trivy_runs_with_go_gc_tuned_unless_the_operator_set_it() -> None:
    path = {"PATH": os.environ["PATH"]}
    assert _go_env(path) == {**path, "GOGC": "400", "GOMEMLIMIT": "1GiB"}
    assert _go_env({**path, "GOGC": "100"}) == {**path, "GOGC": "100"}  # the operator's own
    assert _go_env({**path, "GOMEMLIMIT": "4GiB"}) == {**path, "GOMEMLIMIT": "4GiB"}
    done = CHILDREN.run(["env"], timeout=30, env=_go_env(path))  # what a child really gets
    assert {b"GOGC=400", b"GOMEMLIMIT=1GiB"} <= set(done.stdout.splitlines())
