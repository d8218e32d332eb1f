"""The layer reader and overlay merge on hand-made (hostile) layers, through the public API."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import sqlite3
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from sbom import ImageInfo, LayerError, LayerInput, SbomResult, generate_sbom
from sbom.blob import inflate_early
from sbom.cache import LayerCache
from sbom.reader import DEFAULT_MAX_BYTES

IMAGE = ImageInfo("example/app", "sha256:" + "ab" * 32)
STATUS = """\
Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Depends: libc6 (>= 2.14)

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: python3-six
Status: install ok installed
Architecture: all
Source: six
Version: 1.16.0-4

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
SITE = "usr/local/lib/python3.11/site-packages"
Entry = tuple[str, bytes] | tarfile.TarInfo


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n".encode()


def tar_bytes(*entries: Entry, encoding: str = "utf-8") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding=encoding
    ) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def layer(tmp: Path, name: str, data: bytes, compress: str = "gzip") -> LayerInput:
    if compress == "gzip":
        data = gzip.compress(data, compresslevel=1)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    path = tmp / name
    path.write_bytes(data)
    return LayerInput(f"sha256:{name.encode().hex():0<64}"[:71], path)


def base_entries() -> list[Entry]:
    return [
        ("etc/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian 12"\n'),
        ("etc/debian_version", b"12.4\n"),
        ("var/lib/dpkg/status", STATUS.encode()),
        (f"{SITE}/requests-2.19.0.dist-info/METADATA", metadata("requests", "2.19.0")),
        (f"{SITE}/Jinja2-2.10.dist-info/METADATA", metadata("Jinja2", "2.10")),
        ("app/node_modules/lodash/package.json", b'{"name":"lodash","version":"4.17.15"}'),
        (
            "app/node_modules/@babel/core/package.json",
            b'{"name":"@babel/core","version":"7.0.0","license":"MIT",'
            b'"dependencies":{"lodash":"^4"}}',
        ),
    ]


def purls(result: SbomResult) -> set[str]:
    return {p.purl() for p in result.packages}


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_every_compression_gives_the_same_packages(tmp_path: Path, compress: str) -> None:
    result = generate_sbom(
        [layer(tmp_path, "base", tar_bytes(*base_entries()), compress)], IMAGE, None
    )
    assert result.os_info is not None and result.os_info.version == "12.4"
    assert purls(result) == {
        "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.4&epoch=1",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12.4",
        "pkg:deb/debian/python3-six@1.16.0-4?arch=all&distro=debian-12.4",
        "pkg:pypi/requests@2.19.0",
        "pkg:pypi/jinja2@2.10",
        "pkg:npm/lodash@4.17.15",
        "pkg:npm/%40babel/core@7.0.0",
    }
    zlib = next(p for p in result.packages if p.name == "zlib1g")
    assert (zlib.source_name, zlib.depends, zlib.path) == (
        "zlib",
        ("libc6",),
        "var/lib/dpkg/status",
    )


def test_whiteouts_and_opaque_directories_delete_lower_packages(tmp_path: Path) -> None:
    lower = layer(tmp_path, "lower", tar_bytes(*base_entries()))
    upper = layer(
        tmp_path,
        "upper",
        tar_bytes(
            (f"{SITE}/.wh.Jinja2-2.10.dist-info", b""),
            ("app/node_modules/.wh..wh..opq", b""),
            ("app/node_modules/minimist/package.json", b'{"name":"minimist","version":"1.2.0"}'),
            ("var/lib/dpkg/status", STATUS.split("\n\nPackage: python3-six")[0].encode()),
        ),
    )
    result = generate_sbom([lower, upper], IMAGE, None)
    names = {p.name for p in result.packages}
    assert names == {"zlib1g", "libc6", "requests", "minimist"}
    layer_of = {p.name: p.layer_digest for p in result.packages}
    # zlib1g was installed by the lower layer, even though the upper rewrote the status file
    assert layer_of["zlib1g"] == lower.digest and layer_of["minimist"] == upper.digest


def test_language_packages_owned_by_os_packages_are_not_reported_twice(tmp_path: Path) -> None:
    owned = "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"
    lower = layer(tmp_path, "lower", tar_bytes(*base_entries(), (owned, metadata("six", "1.16.0"))))
    # the file list arrives in another layer than the status file
    upper = layer(
        tmp_path,
        "upper",
        tar_bytes(
            ("var/lib/dpkg/info/python3-six.list", f"/.\n/usr\n/{owned}\n".encode()),
            ("usr/share/doc/python3-six/copyright", b"Files: *\nLicense: Expat\n"),
        ),
    )
    result = generate_sbom([lower, upper], IMAGE, None)
    assert "pkg:pypi/six@1.16.0" not in purls(result)
    six = next(p for p in result.packages if p.name == "python3-six")
    assert owned in six.owned_files and six.licenses == ("MIT",)


def test_hostile_entries_are_skipped_and_nothing_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    hostile = tar_bytes(
        *base_entries(),
        ("../../outside/var/lib/dpkg/status", STATUS.encode()),
        ("var/../../etc/passwd", b"root:x:0:0"),
        ("/abs/app/node_modules/abs/package.json", b'{"name":"abs","version":"1.0.0"}'),
        special("loop-a", tarfile.SYMTYPE, "loop-b"),
        special("loop-b", tarfile.SYMTYPE, "loop-a"),
        special("app/node_modules/link/package.json", tarfile.SYMTYPE, "/etc/shadow"),
        special("app/node_modules/gone/package.json", tarfile.LNKTYPE, "does/not/exist"),
        special(f"{SITE}/dev-1.0.dist-info/METADATA", tarfile.CHRTYPE),
        special(f"{SITE}/fifo-1.0.dist-info/METADATA", tarfile.FIFOTYPE),
        special(
            "app/node_modules/hard/package.json",
            tarfile.LNKTYPE,
            "app/node_modules/lodash/package.json",
        ),
    )
    blob = layer(work, "hostile", hostile)
    before = set(tmp_path.rglob("*"))
    with caplog.at_level(logging.WARNING):
        result = generate_sbom([blob], IMAGE, tmp_path / "cache")
    created = set(tmp_path.rglob("*")) - before
    assert created and all(
        tmp_path / "cache" in p.parents or p == tmp_path / "cache" for p in created
    )
    assert "pkg:npm/abs@1.0.0" in purls(result)  # absolute paths are confined to the root
    # the hard link to a file of the same layer is read (a second copy of lodash); the rest not
    lodash = [p.path for p in result.packages if p.name == "lodash"]
    assert sorted(lodash) == [
        "app/node_modules/hard/package.json",
        "app/node_modules/lodash/package.json",
    ]
    assert {p.name for p in result.packages} == {
        "zlib1g",
        "libc6",
        "python3-six",
        "requests",
        "Jinja2",
        "lodash",
        "core",
        "abs",
    }
    warnings = "\n".join(result.warnings)
    assert "outside the image root" in warnings and "hard link" in warnings


def test_names_that_are_not_utf8_are_skipped_with_a_warning(tmp_path: Path) -> None:
    data = tar_bytes(
        ("app/node_modules/\xe9t\xe9/package.json", b'{"name":"ete","version":"1.0.0"}'),
        ("app/node_modules/ok/package.json", b'{"name":"ok","version":"1.0.0"}'),
        encoding="latin-1",
    )
    result = generate_sbom([layer(tmp_path, "latin", data)], IMAGE, None)
    assert purls(result) == {"pkg:npm/ok@1.0.0"}
    assert any("not UTF-8" in w for w in result.warnings)


def test_malformed_package_db_entries_are_skipped_and_named_in_the_warnings(
    tmp_path: Path,
) -> None:
    broken = tar_bytes(
        (
            "var/lib/dpkg/status",
            b"Package: nover\nStatus: install ok installed\n\n" + STATUS.encode(),
        ),
        ("app/node_modules/bad/package.json", b"{not json"),
        ("app/node_modules/list/package.json", b"[1, 2]"),
        (f"{SITE}/x-1.dist-info/METADATA", b"Metadata-Version: 2.1\nName: x\n"),
        ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:noversion\n"),
        ("var/lib/rpm/rpmdb.sqlite", b"SQLite format 3\x00 but not really"),
    )
    result = generate_sbom([layer(tmp_path, "broken", broken)], IMAGE, None)
    assert {p.name for p in result.packages} == {"zlib1g", "libc6", "python3-six", "musl"}
    assert sorted(result.warnings) == [
        "app/node_modules/bad/package.json: skipped: not a readable package.json: Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)",
        "app/node_modules/list/package.json: skipped: not a readable package.json: "
        "not a JSON object",
        "lib/apk/db/installed: skipped a package record without P: and V:",
        f"{SITE}/x-1.dist-info/METADATA: skipped: metadata without Name and Version",
        "var/lib/dpkg/status: skipped a stanza without Package and Version",
        "var/lib/rpm/rpmdb.sqlite: not a readable rpm database: unreadable SQLite rpmdb: "
        "file is not a database",
    ]


def test_gzip_bomb_is_rejected_past_the_limit(tmp_path: Path) -> None:
    zeros = tar_bytes(("big", bytes(40 * 1024 * 1024)))
    bomb = layer(tmp_path, "bomb", zeros)
    assert bomb.path.stat().st_size < 200_000
    with pytest.raises(LayerError, match="more than"):
        generate_sbom([bomb], IMAGE, None, max_layer_bytes=8 * 1024 * 1024)
    assert generate_sbom([bomb], IMAGE, None, max_layer_bytes=64 * 1024 * 1024).packages == ()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:20] + bytes(b ^ 0x5A for b in data[20:200]) + data[200:],  # garbled
    ],
)
def test_corrupt_gzip_is_a_layer_error(tmp_path: Path, mangle: Callable[[bytes], bytes]) -> None:
    good = layer(tmp_path, "good", tar_bytes(*base_entries()))
    good.path.write_bytes(mangle(good.path.read_bytes()))
    with pytest.raises(LayerError):
        generate_sbom([good], IMAGE, None)


def test_a_blob_that_does_not_match_its_digest_is_rejected(tmp_path: Path) -> None:
    good = layer(tmp_path, "blob", tar_bytes(*base_entries()))
    digest = "sha256:" + hashlib.sha256(good.path.read_bytes()).hexdigest()
    honest = LayerInput(digest, good.path, verified=False)
    assert len(generate_sbom([honest], IMAGE, tmp_path / "cache").packages) == 7
    forged = LayerInput("sha256:" + "0" * 64, good.path, verified=False)
    with pytest.raises(LayerError, match="does not match its digest"):
        generate_sbom([forged], IMAGE, tmp_path / "cache")
    # a cached result is not trusted for a blob that changed since
    good.path.write_bytes(gzip.compress(tar_bytes(*base_entries()[:1])))
    with pytest.raises(LayerError, match="does not match its digest"):
        generate_sbom([honest], IMAGE, tmp_path / "cache")


def test_a_forged_blob_started_early_is_still_rejected(tmp_path: Path) -> None:
    # inflate_early hashes only blobs not verified yet: an unverified one must still be checked
    good = layer(tmp_path, "blob", tar_bytes(*base_entries()))
    forged = LayerInput("sha256:" + "1" * 64, good.path, verified=False)
    started = inflate_early([forged], DEFAULT_MAX_BYTES, count=1)
    assert list(started) == [forged.digest]
    with pytest.raises(LayerError, match="does not match its digest"):
        generate_sbom([forged], IMAGE, tmp_path / "cache", started=started)
    assert not LayerCache.known(tmp_path / "cache", forged.digest)


def rpm_header(tags: dict[int, str | list[str] | list[int]]) -> bytes:
    """An RPM header blob as rpmdb.sqlite stores it (index entries + data store)."""
    index, store = b"", b""
    for tag, value in sorted(tags.items()):
        if isinstance(value, str):
            kind, count, data = 6, 1, value.encode() + b"\0"
        elif value and isinstance(value[0], int):
            store += bytes(-len(store) % 4)
            kind, count = 4, len(value)
            data = b"".join(int(v).to_bytes(4, "big") for v in value)
        else:
            kind, count, data = 8, len(value), b"".join(str(v).encode() + b"\0" for v in value)
        index += struct.pack(">iiii", tag, kind, len(store), count)
        store += data
    return struct.pack(">II", len(tags), len(store)) + index + store


def test_status_d_apk_and_rpm_databases(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "rpmdb.sqlite")
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)")
    bash: dict[int, str | list[str] | list[int]] = {
        1000: "bash", 1001: "5.1.8", 1002: "6.el9", 1003: [1], 1014: "GPLv3+",
        1022: "x86_64", 1044: "bash-5.1.8-6.el9.src.rpm", 1116: [0], 1117: ["bash"],
        1118: ["/usr/bin/"],
    }  # fmt: skip
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (rpm_header(bash),))
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (b"\xff" * 12,))  # malformed: skipped
    db.commit()
    db.close()
    data = tar_bytes(
        ("etc/os-release", b'ID="rocky"\nVERSION_ID="9.3"\n'),
        ("var/lib/rpm/rpmdb.sqlite", (tmp_path / "rpmdb.sqlite").read_bytes()),
        ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0\nArchitecture: all\n"),
        (
            "lib/apk/db/installed",
            b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nF:lib\nR:ld-musl.so.1\n",
        ),
    )
    result = generate_sbom([layer(tmp_path, "distros", data)], IMAGE, None)
    assert purls(result) == {
        "pkg:rpm/rocky/bash@5.1.8-6.el9?arch=x86_64&distro=rocky-9.3&epoch=1",
        "pkg:deb/rocky/tzdata@2024a-0?arch=all&distro=rocky-9.3",
        "pkg:apk/rocky/musl@1.2.4-r2?arch=x86_64&distro=9.3",  # Trivy: bare version for apk
    }
    by_name = {p.name: p for p in result.packages}
    assert by_name["bash"].owned_files == ("usr/bin/bash",)
    assert by_name["bash"].source_name == "bash"
    assert by_name["bash"].licenses == ("GPL-3.0-or-later",)
    assert by_name["musl"].owned_files == ("lib/ld-musl.so.1",)


def test_a_real_rpmdb_sqlite_made_by_rpm(tmp_path: Path) -> None:
    spec = tmp_path / "hello.spec"
    spec.write_text(
        "Name: hello-sc\nVersion: 1.2.3\nRelease: 4\nEpoch: 2\nSummary: t\nLicense: MIT\n"
        "BuildArch: noarch\nRequires: bash\n%description\nt\n%install\n"
        "mkdir -p %{buildroot}/usr/share/hello\necho hi > %{buildroot}/usr/share/hello/hi.txt\n"
        "%files\n/usr/share/hello/hi.txt\n"
    )
    top, dbpath = tmp_path / "top", tmp_path / "db"

    def sh(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    sh("rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec))
    sh("rpm", "--dbpath", str(dbpath), "--initdb")
    sh("rpm", "--dbpath", str(dbpath), "-i", "--nodeps", "--justdb", *map(str, top.rglob("*.rpm")))
    data = tar_bytes(
        ("etc/os-release", b'ID="fedora"\nVERSION_ID=39\n'),
        ("usr/lib/sysimage/rpm/rpmdb.sqlite", (dbpath / "rpmdb.sqlite").read_bytes()),
        ("usr/share/hello/hi.txt", b"hi\n"),
    )
    result = generate_sbom([layer(tmp_path, "fedora", data)], IMAGE, None)
    assert purls(result) == {"pkg:rpm/fedora/hello-sc@1.2.3-4?arch=noarch&distro=fedora-39&epoch=2"}
    (hello,) = result.packages
    assert hello.owned_files == ("usr/share/hello/hi.txt",) and hello.depends == ("bash",)
    assert (hello.source_name, hello.source_version, hello.licenses) == (
        "hello-sc",
        "1.2.3-4",
        ("MIT",),
    )


def test_while_reading_runs_once_while_layers_are_read_and_not_for_cached_ones(
    tmp_path: Path,
) -> None:
    calls: list[int] = []
    base = layer(tmp_path, "base", tar_bytes(*base_entries()))
    first = generate_sbom([base], IMAGE, tmp_path / "cache", while_reading=lambda: calls.append(1))
    assert calls == [1]
    again = generate_sbom([base], IMAGE, tmp_path / "cache", while_reading=lambda: calls.append(2))
    assert calls == [1], "nothing was read: the layer came from the cache"
    assert again.cached_layers == 1 and purls(again) == purls(first)


def test_layers_started_early_give_the_same_sbom(tmp_path: Path) -> None:
    gzipped = layer(tmp_path, "base", tar_bytes(*base_entries()))
    zstd = layer(tmp_path, "top", tar_bytes(("etc/motd", b"hi\n")), "zstd")
    expected = purls(generate_sbom([gzipped, zstd], IMAGE, None))
    cache = tmp_path / "cache"
    assert not LayerCache.known(cache, gzipped.digest)
    # a zstd layer's window is reserved from the decompressor pool first: never started early
    started = inflate_early([gzipped, zstd], DEFAULT_MAX_BYTES, count=2)
    assert list(started) == [gzipped.digest]
    assert purls(generate_sbom([gzipped, zstd], IMAGE, cache, started=started)) == expected
    assert LayerCache.known(cache, gzipped.digest) and LayerCache.known(cache, zstd.digest)
