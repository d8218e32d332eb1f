"""Where OS and application package data live in real images, against the real Trivy on the same
image: apk's database at both of its locations (Trivy's own apk fixture, see
tests/fixtures/apk/README.md), a distroless Debian image (``var/lib/dpkg/status.d/``, one file
per package, as Google's distroless images have it, made from this machine's real dpkg
stanzas) and an application's own ``package.json`` outside ``node_modules``."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sbom import generate_sbom
from sbom.generate import SbomResult
from sbom.local import oci_layout
from tests.support.images import files_layout
from tests.support.trivydb import build_trivy_db

APK = Path(__file__).parent / "fixtures" / "apk" / "installed"
ALPINE = {"etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n", "etc/alpine-release": b"3.19.1\n"}
DEBIAN = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\n', "etc/debian_version": b"12.10\n"}
DISTROLESS = ("tzdata", "libc6", "base-files", "netbase", "libssl3")


@pytest.fixture(scope="module")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("trivy")
    build_trivy_db(cache, [])
    return cache


def scan(cache: Path, tmp_path: Path, files: dict[str, bytes]) -> tuple[SbomResult, set[str]]:
    """Our SbomResult and Trivy's purls for a one-layer image holding ``files``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    layout = files_layout(tmp_path / "oci", "test", [files])
    command = ["trivy", "image", "--input", f"{layout}:test", "--format", "cyclonedx"]
    command += ["--cache-dir", str(cache), "--quiet", "--skip-version-check", "--offline-scan"]
    command += ["--skip-db-update", "--skip-java-db-update"]
    report: dict[str, Any] = json.loads(
        subprocess.run(command, capture_output=True, timeout=300, check=True).stdout
    )
    theirs = {str(c["purl"]) for c in report.get("components") or [] if c.get("purl")}
    return generate_sbom(*oci_layout(layout, "test"), None), theirs


@pytest.mark.parametrize("location", ["lib/apk/db/installed", "usr/lib/apk/db/installed"])
def test_apk_database_at_both_locations(tmp_path: Path, trivy_cache: Path, location: str) -> None:
    result, theirs = scan(trivy_cache, tmp_path, {**ALPINE, location: APK.read_bytes()})
    ours = {p.purl() for p in result.packages}
    assert ours == theirs and len(ours) == 15
    assert "pkg:apk/alpine/musl@1.1.14-r10?arch=x86_64&distro=3.19.1" in ours
    by_name = {p.name: p for p in result.packages}
    assert by_name["ada-libs"].licenses == ("(Apache-2.0 OR MIT) AND MPL-2.0",)
    assert by_name["musl-utils"].licenses == ("MIT", "BSD-3-Clause", "GPL-2.0-or-later")
    assert result.warnings == (f"{location}: skipped a package record without P: and V:",)


def dpkg_stanzas(names: tuple[str, ...]) -> dict[str, bytes]:
    """This machine's own dpkg status stanzas of ``names`` (real Debian metadata)."""
    found: dict[str, bytes] = {}
    for stanza in Path("/var/lib/dpkg/status").read_text().split("\n\n"):
        name = stanza.split("\n", 1)[0].removeprefix("Package: ")
        if name in names:
            found[name] = (stanza.strip("\n") + "\n").encode()
    assert set(found) == set(names), set(names) - set(found)
    return found


def test_distroless_status_d(tmp_path: Path, trivy_cache: Path) -> None:
    files = dict(DEBIAN)
    for name, stanza in dpkg_stanzas(DISTROLESS).items():
        files[f"var/lib/dpkg/status.d/{name}"] = stanza
        files[f"var/lib/dpkg/status.d/{name}.md5sums"] = b"d41d8cd98f00b204e9800998ecf8427e  x\n"
    result, theirs = scan(trivy_cache, tmp_path, files)
    ours = {p.purl() for p in result.packages}
    assert ours == theirs
    assert {p.name for p in result.packages} == set(DISTROLESS)
    assert not result.warnings


def test_application_package_json_outside_node_modules(tmp_path: Path, trivy_cache: Path) -> None:
    files = {
        **DEBIAN,
        "srv/app/package.json": json.dumps(
            {"name": "@acme/shop", "version": "2.1.0", "license": ["MIT", "ISC"]}
        ).encode(),
        "srv/app/node_modules/left-pad/package.json": b'{"name":"left-pad","version":"1.3.0"}',
        # what `npm install --prefix` writes: dependencies only, no identity (not a package)
        "srv/other/package.json": b'{"dependencies": {"left-pad": "^1.3.0"}}',
    }
    result, theirs = scan(trivy_cache, tmp_path, files)
    ours = {p.purl() for p in result.packages}
    assert ours == theirs == {"pkg:npm/%40acme/shop@2.1.0", "pkg:npm/left-pad@1.3.0"}
    (shop,) = [p for p in result.packages if p.name == "shop"]
    assert shop.licenses == ("MIT", "ISC")


CARGO = Path(__file__).parent / "fixtures" / "cargo"


def test_cargo_lock_pruned_by_cargo_toml_as_trivy_does(tmp_path: Path, trivy_cache: Path) -> None:
    files = dict(DEBIAN)
    for path in CARGO.rglob("Cargo.*"):
        files[f"srv/{path.relative_to(CARGO).as_posix()}"] = path.read_bytes()
    result, theirs = scan(trivy_cache, tmp_path / "pruned", files)
    ours = {p.purl() for p in result.packages}
    assert ours == {p for p in theirs if p.startswith("pkg:cargo/")}
    assert not any("winapi" in p for p in ours)  # app's dev-dependency, and what it pulls in
    assert {"pkg:cargo/gdb-command@0.7.6", "pkg:cargo/member2@0.1.0"} <= ours
    # without a Cargo.toml beside it, a lock file gives every package (as Trivy)
    lone = {**DEBIAN, "srv/lone/Cargo.lock": (CARGO / "app/Cargo.lock").read_bytes()}
    result, theirs = scan(trivy_cache, tmp_path / "lone", lone)
    ours_lone = {p.purl() for p in result.packages}
    assert ours_lone == {p for p in theirs if p.startswith("pkg:cargo/")}
    assert "pkg:cargo/winapi@0.3.9" in ours_lone and len(ours_lone) == 10


def build_egg(work: Path) -> Path:
    """A zipped egg made by setuptools' own ``bdist_egg``."""
    (work / "hello").mkdir(parents=True)
    (work / "hello/__init__.py").write_text("")
    (work / "setup.py").write_text(
        "from setuptools import setup\n"
        'setup(name="hello-egg", version="1.2.3", packages=["hello"], license="MIT",\n'
        '      classifiers=["License :: OSI Approved :: MIT License"])\n'
    )
    command = [sys.executable, "setup.py", "-q", "bdist_egg"]
    subprocess.run(command, cwd=work, capture_output=True, timeout=120, check=True)
    (egg,) = (work / "dist").glob("*.egg")
    return egg


def test_python_eggs_zipped_and_unzipped(tmp_path: Path, trivy_cache: Path) -> None:
    egg = build_egg(tmp_path / "egg")
    with zipfile.ZipFile(egg) as archive:
        pkg_info = archive.read("EGG-INFO/PKG-INFO")
    site = "usr/local/lib/python3.11/site-packages"
    files = {
        **DEBIAN,
        f"{site}/{egg.name}": egg.read_bytes(),
        f"{site}/other-2.0-py3.11.egg/EGG-INFO/PKG-INFO": pkg_info.replace(
            b"hello-egg", b"other"
        ).replace(b"1.2.3", b"2.0"),
        f"{site}/broken-1.0-py3.11.egg": b"PK\x03\x04 not a zip",
    }
    result, theirs = scan(trivy_cache, tmp_path, files)
    ours = {p.purl() for p in result.packages}
    assert ours == theirs == {"pkg:pypi/hello-egg@1.2.3", "pkg:pypi/other@2.0"}
    assert {p.licenses for p in result.packages} == {("MIT",)}
    (warning,) = result.warnings
    assert warning.startswith(f"{site}/broken-1.0-py3.11.egg: skipped: not a readable egg")
