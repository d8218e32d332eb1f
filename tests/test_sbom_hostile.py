"""No single file can abort an SBOM: malformed, truncated, hostile and oddly encoded manifests
for every cataloger, in one real image next to good packages, through ``supplychain sbom``.

Each bad file must be named in a warning (on stderr, and in the SbomResult the service
stores), and every good package must still be in the SBOM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sbom import generate_sbom
from sbom.local import oci_layout
from supplychain.evidence.database import Database
from supplychain.evidence.models import Scan
from tests.support.images import files_layout
from tests.support.service import run_cli as service_cli
from tests.support.service import service_env
from tests.support.trivydb import build_trivy_db
from tests.test_sbom_catalogers_lang import zip_bytes
from tests.test_sbom_output import run_cli

SITE = "usr/local/lib/python3.11/site-packages"
OS_RELEASE = b'ID=debian\nVERSION_ID="12"\n'
GOOD: dict[str, bytes] = {
    "etc/os-release": OS_RELEASE,
    "var/lib/dpkg/status": b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13-1\n"
    b"Architecture: amd64\n\nPackage: broken-version\nStatus: install ok installed\n"
    b"Version: 1:5.#\n",
    "lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n",
    "app/node_modules/lodash/package.json": b'{"name": "lodash", "version": "4.17.15"}',
    f"{SITE}/six-1.16.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n",
    "srv/vendor/composer/installed.json": json.dumps(
        {"packages": [{"name": "monolog/monolog", "version": "2.9.1"}]}
    ).encode(),
    "srv/Cargo.lock": b'[[package]]\nname = "anyhow"\nversion = "1.0.0"\n',
}
GOOD_PURLS = {
    "pkg:deb/debian/zlib1g@1.2.13-1?arch=amd64&distro=debian-12&epoch=1",
    "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=12",
    "pkg:npm/lodash@4.17.15",
    "pkg:pypi/six@1.16.0",
    "pkg:composer/monolog/monolog@2.9.1",
    "pkg:cargo/anyhow@1.0.0",
}


_JAR = zip_bytes({"META-INF/maven/g/a/pom.properties": b"groupId=g\nartifactId=a\nversion=1\n"})
BAD: dict[str, bytes] = {
    # dpkg: an invalid version (in the good status file, above), garbage, UTF-16
    "var/lib/dpkg/status.d/garbage": bytes(range(256)) * 8,
    "var/lib/dpkg/status.d/utf16": "Package: x\nVersion: 1\n".encode("utf-16"),
    # npm: the names that used to abort the SBOM, broken and hostile JSON
    "app/node_modules/@scope/name/package.json": b'{"name": "@scope/name/", "version": "1.0.0"}',
    "app/node_modules/slash/package.json": b'{"name": "/", "version": "1.0.0"}',
    "app/node_modules/truncated/package.json": b'{"name": "truncated", "vers',
    "app/node_modules/deep/package.json": b"[" * 100_000 + b"]" * 100_000,
    "app/node_modules/latin1/package.json": '{"name": "caf\u00e9"}'.encode("latin-1"),
    "app/node_modules/types/package.json": b'{"name": ["x"], "version": 1}',
    # Composer
    "srv/a/vendor/composer/installed.json": json.dumps(
        {"packages": [{"name": "vendor/", "version": "1.0"}]}
    ).encode(),
    "srv/b/vendor/composer/installed.json": b'{"packages": "nope"}',
    "srv/c/vendor/composer/installed.json": b"\xff\xfe{",
    # Python
    f"{SITE}/trunc-1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tru",
    f"{SITE}/bin-1.dist-info/METADATA": bytes(range(256)),
    # Java
    "srv/truncated.jar": _JAR[: len(_JAR) // 2],
    "srv/not-a-zip.war": b"PK\x03\x04 but not really a zip",
    # Ruby
    "var/lib/gems/3.1.0/specifications/bad.gemspec": b"\x00\xff Gem::Specification.new do",
    # Rust
    "srv/bad/Cargo.lock": b"[[package]\nname = ",
    "srv/odd/Cargo.lock": b'package = "not a table"\n',
    # Go and Rust binaries: an ELF header and nothing else, with the Go build-info magic
    "usr/local/bin/truncated-go": b"\x7fELF\x02\x01\x01" + bytes(9) + b"\xff Go buildinf:",
    # apk: a second database location with garbage
    "usr/lib/apk/db/installed": b"\xff\xfe\x00P:\x00\nV\n" * 10,
}
# files that may be skipped without a word (none: a manifest with no name/version is silent,
# as in Trivy, but none of these is one)
SILENT: set[str] = set()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    modes = {"usr/local/bin/truncated-go": 0o755}
    return files_layout(tmp_path_factory.mktemp("hostile") / "oci", "test", [GOOD, BAD], modes)


def test_every_bad_file_is_a_warning_and_the_rest_is_catalogued(layout: Path) -> None:
    layers, info = oci_layout(layout, "test")
    result = generate_sbom(layers, info, None)
    purls = {p.purl() for p in result.packages}
    assert purls == GOOD_PURLS
    warned = {w.split(": ", 1)[0] for w in result.warnings}
    assert warned == (set(BAD) - SILENT) | {"var/lib/dpkg/status"}
    assert "var/lib/dpkg/status: skipped broken-version: invalid version '1:5.#'" in (
        result.warnings
    )


def test_the_cli_shows_the_warnings_and_writes_the_sbom(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sbom.json"
    code = run_cli(f"oci:{layout}:test", "-o", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0
    err = capsys.readouterr().err
    for path in set(BAD) - SILENT:
        assert f"supplychain sbom: warning: {path}: " in err
    document = json.loads(out.read_text())
    assert {c["purl"] for c in document["components"] if "purl" in c} == GOOD_PURLS
    # the warnings come back from the per-layer cache too
    code = run_cli(f"oci:{layout}:test", "-o", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and capsys.readouterr().err == err


def test_the_service_stores_the_warnings_with_the_scan(
    tmp_path: Path, db: Database, pg_url: str
) -> None:
    """``supplychain scan`` of the hostile image: decided, and every skipped file on record.

    Java archives are left out: offline, Trivy needs its separate Java DB for them.
    """
    bad = {k: v for k, v in BAD.items() if not k.endswith((".jar", ".war", ".ear"))}
    layout = files_layout(tmp_path / "oci", "hostile", [GOOD, bad])
    build_trivy_db(tmp_path / "trivy", [])
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "SUPPLYCHAIN_DATABASE_URL": pg_url,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
        }
    )
    done = service_cli(["scan", f"oci:{layout}:hostile", "--output", "json"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["decision"] == "allow"
    with db.session() as session:
        (warnings,) = session.scalars(select(Scan.sbom_warnings)).all()
    named = " ".join(warnings)
    for path in ("app/node_modules/@scope/name/package.json", "app/node_modules/deep/package.json"):
        assert path in named


def test_a_status_file_naming_a_host_file_is_not_read_from_the_host(tmp_path: Path) -> None:
    """python-debian reads a one-line string naming an existing file as that file: an image's
    status file holding a host path must not list the host's packages."""
    from sbom.catalogers.dpkg import DpkgCataloger
    from sbom.interface import FileEntry

    host = tmp_path / "status"
    host.write_text("Package: host-only\nStatus: install ok installed\nVersion: 1.0\n")
    entry = FileEntry("var/lib/dpkg/status", str(host).encode())
    found = DpkgCataloger().catalog([entry], None)
    assert found == {"var/lib/dpkg/status": []}
