"""RPM databases in their three formats, each built into a real one-layer image, checked against
what the fixture's own project asserts, against Debian's ``rpm`` reading the same database, and
against the real Trivy scanning the same image.

Fixtures (tests/fixtures/rpmdb/README.md): go-rpmdb's SLES 15 ndb ``Packages.db``, its RHEL 8
Berkeley DB ``Packages`` (libuuid) and its CBL-Mariner 2.0 ``rpmdb.sqlite``. Berkeley DB files
with many packages are made here by Berkeley DB itself (``db_load``, Debian's ``db-util``) from
the Mariner headers, since Debian's rpm can read BDB (``bdb_ro``) but not write it, and cannot
write ndb at all.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sbom import generate_sbom
from sbom.generate import SbomResult
from sbom.licenses import spdx
from sbom.local import oci_layout
from tests.support.images import files_layout
from tests.support.trivydb import build_trivy_db

FIXTURES = Path(__file__).parent / "fixtures" / "rpmdb"
SLES = b'NAME="SLES"\nVERSION="15-SP3"\nVERSION_ID="15.3"\nID="sles"\nID_LIKE="suse"\n'
RHEL = b'NAME="Red Hat Enterprise Linux"\nVERSION_ID="8.8"\nID="rhel"\n'
RHEL_RELEASE = b"Red Hat Enterprise Linux release 8.8 (Ootpa)\n"
MARINER = b'NAME="Common Base Linux Mariner"\nID=mariner\nVERSION_ID="2.0"\n'
APK = b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n"


@pytest.fixture(scope="module")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("trivy")
    build_trivy_db(cache, [])
    return cache


def image(tmp_path: Path, *layers: dict[str, bytes]) -> Path:
    return files_layout(tmp_path / "oci", "test", list(layers))


def ours(layout: Path) -> SbomResult:
    layers, info = oci_layout(layout, "test")
    return generate_sbom(layers, info, None)


def trivy(cache: Path, layout: Path) -> dict[str, Any]:
    command = ["trivy", "image", "--input", f"{layout}:test", "--format", "cyclonedx"]
    command += ["--cache-dir", str(cache), "--quiet", "--skip-version-check", "--offline-scan"]
    command += ["--skip-db-update", "--skip-java-db-update"]
    done = subprocess.run(command, capture_output=True, timeout=300, check=True)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def rpm_purls(result: SbomResult) -> set[str]:
    return {p.purl() for p in result.packages if p.type == "rpm"}


def trivy_rpm_purls(report: dict[str, Any]) -> set[str]:
    return {
        str(c["purl"])
        for c in report.get("components") or []
        if str(c.get("purl", "")).startswith("pkg:rpm/")
    }


def rpm_query(dbpath: Path, backend: str) -> set[tuple[str, str, str]]:
    """(name, [epoch:]version-release, arch) of every package, as Debian's rpm reads them."""
    out = subprocess.run(
        ["rpm", "--dbpath", str(dbpath), "--define", f"_db_backend {backend}", "-qa", "--qf",
         "%{NAME} %{EPOCH} %{VERSION}-%{RELEASE} %{ARCH}\\n"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = set()
    for line in out.splitlines():
        name, epoch, version, arch = line.split(" ")
        if name != "gpg-pubkey":
            found.add((name, version if epoch == "(none)" else f"{epoch}:{version}", arch))
    return found


def nevras(result: SbomResult) -> set[tuple[str, str, str]]:
    return {(p.name, p.version, dict(p.qualifiers)["arch"]) for p in result.packages}


def test_ndb_of_sles_15_matches_go_rpmdb_and_trivy(tmp_path: Path, trivy_cache: Path) -> None:
    expected = json.loads((FIXTURES / "sle15-bci/expected.json").read_text())["packages"]
    layout = image(
        tmp_path,
        {
            "etc/os-release": SLES,
            "var/lib/rpm/Packages.db": (FIXTURES / "sle15-bci/Packages.db").read_bytes(),
        },
    )
    result = ours(layout)
    assert not result.warnings
    assert nevras(result) == {
        (p["name"], f"{p['version']}-{p['release']}", p["arch"]) for p in expected
    }
    by_name = {p.name: p for p in result.packages}
    for package in expected:
        found = by_name[package["name"]]
        source = package["sourcerpm"].removesuffix(".src.rpm")
        assert f"{found.source_name}-{found.source_version}" == source
        assert found.licenses == (spdx(package["license"]),)
    # the licences SLES already writes as SPDX stay as written; legacy ones become SPDX
    assert by_name["libgmp10"].licenses == ("LGPL-3.0-or-later OR GPL-2.0-or-later",)
    assert by_name["libacl1"].licenses == ("GPL-2.0-or-later AND LGPL-2.1-or-later",)
    assert by_name["bash"].owned_files and "bin/bash" in by_name["bash"].owned_files
    assert rpm_purls(result) == trivy_rpm_purls(trivy(trivy_cache, layout))
    assert "pkg:rpm/suse/bash@4.4-19.6.1?arch=x86_64&distro=sles-15.3" in rpm_purls(result)


def test_berkeley_db_of_rhel_8_matches_go_rpmdb_and_trivy(
    tmp_path: Path, trivy_cache: Path
) -> None:
    layout = image(
        tmp_path,
        {
            "etc/os-release": RHEL,
            "etc/redhat-release": RHEL_RELEASE,
            "var/lib/rpm/Packages": (FIXTURES / "libuuid/Packages").read_bytes(),
        },
    )
    result = ours(layout)
    (libuuid,) = result.packages
    # go-rpmdb's assertion for this database (pkg/rpmdb_test.go, "libuuid")
    assert (libuuid.name, libuuid.version, libuuid.qualifiers[0]) == (
        "libuuid",
        "2.32.1-42.el8_8",
        ("arch", "x86_64"),
    )
    assert (libuuid.source_name, libuuid.source_version) == ("util-linux", "2.32.1-42.el8_8")
    assert libuuid.licenses == ("BSD-3-Clause",)  # "BSD", as Trivy maps it
    assert "usr/lib64/libuuid.so.1" in libuuid.owned_files
    assert (
        rpm_purls(result)
        == trivy_rpm_purls(trivy(trivy_cache, layout))
        == {"pkg:rpm/redhat/libuuid@2.32.1-42.el8_8?arch=x86_64&distro=redhat-8.8"}
    )


def berkeley_db(source: Path, out: Path, page_size: int, order: str = "1234") -> None:
    """A hash database like rpm's ``Packages``, written by Berkeley DB's own db_load: the
    header blobs of ``source`` (an rpmdb.sqlite) under 4-byte header-number keys."""
    rows = sqlite3.connect(source).execute("SELECT hnum, blob FROM Packages").fetchall()
    lines = ["VERSION=3", "format=bytevalue", "type=hash", f"db_pagesize={page_size}"]
    lines += [f"db_lorder={order}", "HEADER=END"]
    pack = "<I" if order == "1234" else ">I"
    for number, blob in rows:
        lines += [" " + struct.pack(pack, number).hex(), " " + bytes(blob).hex()]
    lines.append("DATA=END")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["db_load", str(out)], input="\n".join(lines) + "\n", text=True, check=True)


@pytest.mark.parametrize(
    ("page_size", "order"), [(512, "1234"), (4096, "1234"), (65536, "1234"), (4096, "4321")]
)
def test_berkeley_db_made_by_berkeley_db_matches_debians_rpm(
    tmp_path: Path, page_size: int, order: str
) -> None:
    """Small pages chain every header over overflow pages; 64 KiB pages keep most inline."""
    sqlite_db = FIXTURES / "cbl-mariner-2.0/rpmdb.sqlite"
    berkeley_db(sqlite_db, tmp_path / "db/Packages", page_size, order)
    layout = image(
        tmp_path,
        {
            "etc/os-release": MARINER,
            "usr/lib/sysimage/rpm/Packages": (tmp_path / "db/Packages").read_bytes(),
        },
    )
    result = ours(layout)
    assert not result.warnings
    assert (
        nevras(result)
        == rpm_query(tmp_path / "db", "bdb_ro")
        == rpm_query(sqlite_db.parent, "sqlite")
    )
    assert len(result.packages) == 129


def test_sqlite_and_berkeley_db_agree_with_trivy(tmp_path: Path, trivy_cache: Path) -> None:
    sqlite_db = FIXTURES / "cbl-mariner-2.0/rpmdb.sqlite"
    berkeley_db(sqlite_db, tmp_path / "db/Packages", 4096)
    for name, path, data in (
        ("sqlite", "var/lib/rpm/rpmdb.sqlite", sqlite_db.read_bytes()),
        ("bdb", "var/lib/rpm/Packages", (tmp_path / "db/Packages").read_bytes()),
    ):
        layout = files_layout(tmp_path / name, "test", [{"etc/os-release": MARINER, path: data}])
        result = ours(layout)
        assert len(rpm_purls(result)) == 129
        assert rpm_purls(result) == trivy_rpm_purls(trivy(trivy_cache, layout)), name
        assert "pkg:rpm/cbl-mariner/glibc@2.34-2.cm2?arch=x86_64&distro=cbl-mariner-2.0" in (
            rpm_purls(result)
        )


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _first_overflow_page(data: bytes, page_size: int) -> int:
    for number in range(1, len(data) // page_size):
        if data[number * page_size + 25] == 7:
            return number
    raise AssertionError("no overflow page")


def hostile_databases(tmp_path: Path) -> dict[str, bytes]:
    berkeley_db(FIXTURES / "cbl-mariner-2.0/rpmdb.sqlite", tmp_path / "db/Packages", 512)
    bdb = (tmp_path / "db/Packages").read_bytes()
    loop = _first_overflow_page(bdb, 512)
    ndb = (FIXTURES / "sle15-bci/Packages.db").read_bytes()
    return {
        "truncated Berkeley DB": bdb[: len(bdb) // 2],
        "overflow chain that loops": _patch(bdb, loop * 512 + 16, struct.pack("<I", loop)),
        "odd page size": _patch(bdb, 20, struct.pack("<I", 3)),
        "ndb with a broken slot": _patch(ndb, 32 + 16 * 3, b"XXXX"),
        "ndb blob past the end": _patch(ndb, 32 + 16 * 0 + 8, struct.pack("<I", 0xFFFFFF)),
        "ndb truncated": ndb[:4000],
        "random bytes": bytes(range(256)) * 64,
        "empty": b"",
        "SQLite without the Packages table": _sqlite_without_packages(tmp_path / "empty.sqlite"),
    }


def _sqlite_without_packages(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE Other (x)")
    conn.close()
    return path.read_bytes()


def test_hostile_rpm_databases_cost_only_themselves(tmp_path: Path) -> None:
    cases = hostile_databases(tmp_path)
    for index, (what, data) in enumerate(cases.items()):
        names = ("var/lib/rpm/Packages", "var/lib/rpm/Packages.db", "var/lib/rpm/rpmdb.sqlite")
        path = names[index % 3]
        layout = files_layout(
            tmp_path / f"case{index}",
            "test",
            [{"etc/os-release": MARINER, "lib/apk/db/installed": APK}, {path: data}],
        )
        result = ours(layout)
        # the rest of the image is still catalogued, and the damage is named
        assert any(p.name == "musl" for p in result.packages), what
        assert any(w.startswith(f"{path}: ") for w in result.warnings), (what, result.warnings)
