"""``supplychain sbom`` on hostile layers, as a user runs it: a real child process on an OCI layout
(some also pulled from the real registry), with its exit code, its reason, its peak RSS, its time,
and every file it wrote checked.

Each image is built as real bytes by :mod:`tests.support.hostile_layers` (tar headers by hand where
``tarfile`` refuses). The child gets its own ``TMPDIR`` and ``HOME``; the files it creates while
it runs are polled, and the whole test directory is compared before and after.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbom import ReadLimits, generate_sbom
from sbom.local import oci_layout
from tests.support.hostile_layers import (
    CASES,
    END,
    Layer,
    MiB,
    Run,
    entry,
    header,
    npm,
    pad,
    pax,
    pax_record,
    run_sbom,
    write_image,
)
from tests.support.images import push
from tests.support.registry import Registry
from tests.test_sbom_layers import rpm_header

MAX_RSS_MIB = 300
MAX_SECONDS = 150  # the heaviest case streams 1.25 GiB; generous for a shared 2-core machine
LIMIT = "the layer decompresses to more than"

# exit code and the reason the command gives (after "supplychain sbom: layer sha256:…: ")
FAILURES: dict[str, str] = {
    "negative-pax-size": "corrupt pax header: size b'-1536'",
    "huge-octal-size": f"a tar entry's size of 68719476735 bytes: {LIMIT} 8589934592 bytes",
    "base256-size-huge": f"a tar entry's size of {1 << 80} bytes: {LIMIT} 8589934592 bytes",
    "base256-size-negative": "corrupt tar header: negative or invalid size",
    "truncated-archive": "truncated tar archive (inside an entry's data)",
    "oversized-pax-record": "tar x header record of 2097169 bytes is over the 1048576-byte limit",
    "oversized-long-name": "tar L header record of 131072 bytes is over the 65536-byte limit",
    "bad-header-checksum": "corrupt tar header (bad checksum): not a tar archive",
    "gzip-bomb": "layer decompresses to more than 1073741824 bytes",
    "zstd-bomb": "layer decompresses to more than 1073741824 bytes",
    "zstd-window-over-limit": "zstd window of 2147483648 bytes is over the 134217728-byte limit",
    "8x256MiB-extensionless-files": (
        "the files the catalogers read exceed the per-layer budget of 1073741824 bytes"
    ),
    "90k-tiny-wanted-files": "the image holds more than 80000 wanted files and whiteouts",
    "300k-dpkg-stanzas": "the image holds more than 100000 packages",
    "name-over-limit": "tar entry name over the 65536-byte limit",
}
SUCCESSES: dict[str, set[str]] = {
    "zstd-128MiB-windows-in-parallel": {"pkg:npm/ok@1.0.0"},
    "3x256MiB-executables-with-go-marker": {"pkg:npm/ok@1.0.0"},
    "100k-tiny-unwanted-files": {"pkg:npm/ok@1.0.0"},
    "link-escapes": {"pkg:npm/ok@1.0.0", "pkg:npm/a@1.0.0", "pkg:npm/through-symlink@1.0.0"},
    "bad-names": {"pkg:npm/ok@1.0.0"},
    "deeply-nested-paths": {"pkg:npm/ok@1.0.0", "pkg:npm/deep@1.0.0"},
}
SPILLS = {"8x256MiB-extensionless-files", "3x256MiB-executables-with-go-marker"}
DEDICATED = {"link-escapes", "bad-names"}  # successes with their own test below


def test_every_case_has_an_expected_outcome() -> None:
    assert set(CASES) == set(FAILURES) | set(SUCCESSES)


@dataclasses.dataclass(frozen=True)
class Sandbox:
    root: Path
    outside: Path
    tmpdir: Path
    home: Path
    cache: Path

    def files(self) -> dict[Path, tuple[int, int]]:
        return {
            p: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in self.root.rglob("*")
            if p.is_file() or p.is_symlink()
        }

    def run(self, image: str, *args: str) -> tuple[Run, set[Path]]:
        """Run the command; return what it did and the files it left (all checked here)."""
        before = self.files()
        run = run_sbom(
            image,
            *args,
            cache=self.cache,
            tmpdir=self.tmpdir,
            home=self.home,
            watch=self.root,
            timeout=MAX_SECONDS,
        )
        after = self.files()
        assert {p: after.get(p) for p in before} == before, "a file that was there changed"
        created = set(after) - set(before)
        # nothing written outside the cache (layer results, pulled blobs) while it ran or after
        assert all(self.cache in p.parents for p in created), created
        during = run.seen - set(before)
        assert all(self.cache in p.parents or self.tmpdir in p.parents for p in during), during
        assert not any(self.tmpdir.iterdir()), "the work folder was not removed"
        assert not any(self.outside.iterdir()) and not any(self.home.iterdir())
        assert not run.killed, f"killed after {MAX_SECONDS} s"
        assert run.seconds < MAX_SECONDS
        assert run.peak_rss_mib < MAX_RSS_MIB, f"peak RSS {run.peak_rss_mib:.0f} MiB"
        return run, created


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    box = Sandbox(
        tmp_path, tmp_path / "outside", tmp_path / "tmp", tmp_path / "home", tmp_path / "cache"
    )
    for folder in (box.outside, box.tmpdir, box.home):
        folder.mkdir()
    return box


def purls(run: Run) -> list[str]:
    return sorted(c["purl"] for c in json.loads(run.stdout)["components"] if "purl" in c)


def spill_files(run: Run, sandbox: Sandbox) -> set[Path]:
    """Files seen in the command's work folder's spool (``$TMPDIR/sbom-*/sbom-files-*/``)."""
    pattern = re.compile(r"sbom-[^/]+/sbom-files-[^/]+/[^/]+")
    return {
        p
        for p in run.seen
        if sandbox.tmpdir in p.parents and pattern.fullmatch(str(p.relative_to(sandbox.tmpdir)))
    }


def check_failure(run: Run, name: str) -> None:
    assert run.code == 2, run.stderr
    reason = run.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"supplychain sbom: layer sha256:[0-9a-f]{64}: (.*)", reason)
    assert reason.endswith(": " + FAILURES[name]), reason
    assert run.stdout == b""


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_hostile_layer_fails_with_its_reason(sandbox: Sandbox, name: str) -> None:
    case = CASES[name]
    image = write_image(sandbox.root / "layout", "hostile", case.layers(sandbox.outside))
    run, created = sandbox.run(image, *case.args)
    check_failure(run, name)
    assert not [p for p in created if "layers" in p.parts], "a failed layer was cached"
    if name in SPILLS:  # big wanted files went to disk, in the work folder, then were removed
        assert spill_files(run, sandbox)


@pytest.mark.parametrize("name", sorted(set(SUCCESSES) - DEDICATED))
def test_hostile_layer_is_read_within_bounds(sandbox: Sandbox, name: str) -> None:
    image = write_image(sandbox.root / "layout", "hostile", CASES[name].layers(sandbox.outside))
    run, _ = sandbox.run(image)
    assert run.code == 0, run.stderr
    assert set(purls(run)) == SUCCESSES[name]
    if name in SPILLS:
        assert len(spill_files(run, sandbox)) == 3
        for index in range(3):  # each named in a per-file warning, the rest catalogued
            assert f"warning: opt/bin/tool{index}: skipped: not a readable Go binary" in run.stderr
    if name == "zstd-128MiB-windows-in-parallel":
        # two 128 MiB windows at once would take the process near 300 MiB: they take turns
        assert run.peak_rss_mib < 240


def test_link_escapes_read_nothing_outside_the_layer(sandbox: Sandbox) -> None:
    image = write_image(
        sandbox.root / "layout", "links", CASES["link-escapes"].layers(sandbox.outside)
    )
    run, _ = sandbox.run(image)
    assert run.code == 0
    components = json.loads(run.stdout)["components"]
    paths = sorted(
        p["value"] for c in components for p in c.get("properties", []) if "path" in p["name"]
    )
    # hard links to files of the same layer are copies of them; the others are skipped
    assert purls(run) == [
        "pkg:npm/a@1.0.0",
        "pkg:npm/a@1.0.0",
        "pkg:npm/ok@1.0.0",
        "pkg:npm/through-symlink@1.0.0",
        "pkg:npm/through-symlink@1.0.0",
    ], paths
    for link in ("h1", "h2", "h3"):
        assert f"skipped hard link 'app/node_modules/{link}/package.json'" in run.stderr
    assert "skipped entry outside the image root: '../../../../../.." in run.stderr


def test_bad_names_are_skipped_with_warnings(sandbox: Sandbox) -> None:
    image = write_image(
        sandbox.root / "layout", "names", CASES["bad-names"].layers(sandbox.outside)
    )
    run, _ = sandbox.run(image)
    assert run.code == 0
    assert "skipped entry whose name holds a NUL: 'app/node_modules/nul\\x00/package.json'" in (
        run.stderr
    )
    assert run.stderr.count("warning: skipped entry whose name is not UTF-8") == 2


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.push))
def test_hostile_image_pulled_from_the_registry(
    sandbox: Sandbox, registry: Registry, name: str
) -> None:
    case = CASES[name]
    layout = sandbox.root / "layout"
    write_image(layout, "v1", case.layers(sandbox.outside))
    push(layout, "v1", f"{registry.host}/hostile/{name.lower()}:v1")
    run, created = sandbox.run(f"{registry.host}/hostile/{name.lower()}:v1", *case.args)
    check_failure(run, name)
    assert any("blobs" in p.parts for p in created)  # pulled into the blob cache, verified


# --- the catalogers that stream read spooled files as they read small ones -------------------

GOFMT = Path("/usr/lib/go/bin/gofmt")
JAR = Path("/usr/share/java/commons-lang3-3.12.0.jar")


def _jar(folder: Path) -> bytes:
    """The real commons-lang3 jar with 2 MiB of incompressible padding (so it is spooled)."""
    copy = folder / "padded.jar"
    copy.write_bytes(JAR.read_bytes())
    with zipfile.ZipFile(copy, "a") as archive:
        archive.writestr(zipfile.ZipInfo("padding.bin"), os.urandom(2 * MiB))
    return copy.read_bytes()


def _rpmdb(folder: Path) -> bytes:
    """An rpmdb.sqlite in WAL mode, as rpm leaves it, with bash and 2 MiB of padding."""
    db = sqlite3.connect(folder / "rpmdb.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)")
    db.execute("CREATE TABLE Padding (blob BLOB)")
    db.execute("INSERT INTO Padding VALUES (?)", (os.urandom(2 * MiB),))
    bash: dict[int, str | list[str] | list[int]] = {
        1000: "bash", 1001: "5.1.8", 1002: "6.el9", 1022: "x86_64"
    }  # fmt: skip
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (rpm_header(bash),))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = (folder / "rpmdb.sqlite").read_bytes()
    assert data[18:20] == b"\2\2"  # the WAL-mode header
    return data


def test_big_wanted_files_are_spooled_and_catalogued_the_same(sandbox: Sandbox) -> None:
    assert GOFMT.exists() and JAR.exists(), "apt-get install golang-go libcommons-lang3-java"
    jar, rpmdb, gofmt = _jar(sandbox.root), _rpmdb(sandbox.root), GOFMT.read_bytes()
    assert min(len(jar), len(rpmdb), len(gofmt)) > ReadLimits().memory_file_bytes
    data = (
        entry("etc/os-release", b'ID="rocky"\nVERSION_ID="9.3"\n')
        + entry("usr/local/bin/gofmt", gofmt, mode=0o755)
        + entry("srv/app/lib/commons-lang3-3.12.0.jar", jar)
        + entry("var/lib/rpm/rpmdb.sqlite", rpmdb)
        + END
    )
    image = write_image(sandbox.root / "layout", "big", [Layer((data,))])
    run, _ = sandbox.run(image)
    assert run.code == 0, run.stderr
    assert len(spill_files(run, sandbox)) == 3  # the three were read from the work folder
    found = purls(run)
    assert "pkg:maven/org.apache.commons/commons-lang3@3.12.0" in found
    assert "pkg:rpm/rocky/bash@5.1.8-6.el9?arch=x86_64&distro=rocky-9.3" in found
    assert any(p.startswith("pkg:golang/stdlib@v1.") for p in found)
    # the same image with every file held in memory gives the same packages
    layers, info = oci_layout(sandbox.root / "layout", "big")
    in_memory = ReadLimits(memory_file_bytes=64 * MiB, memory_bytes=256 * MiB)
    result = generate_sbom(layers, info, limits=in_memory, work_dir=sandbox.tmpdir)
    assert sorted(p.purl() for p in result.packages) == found


def test_pad_and_header_make_what_tarfile_reads() -> None:
    """The hand-written headers are real tar: Python's reader agrees with them."""
    import io
    import tarfile

    data = header(b"a/b.txt", 3) + pad(b"abc") + END
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.size) == ("a/b.txt", 3)
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"abc"
    assert npm("x") == b'{"name": "x", "version": "1.0.0"}'


def _docker_archive(path: Path, layer: bytes, *, hostile_outer: bool = False) -> str:
    """A ``docker save`` tar written by hand: manifest.json, the config, one layer."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}])
    outer = entry("manifest.json", manifest.encode()) + entry("config.json", config)
    if hostile_outer:  # what makes Python's tarfile loop for ever (CPython CVE-2025-8194)
        outer += pax(pax_record(b"size", b"-1536")) + header(b"x.bin", 0)
    path.write_bytes(outer + entry("l.tar", layer) + END)
    return f"docker-archive:{path}"


def test_docker_archive_with_a_hostile_outer_tar_fails_with_its_reason(sandbox: Sandbox) -> None:
    (layer,) = CASES["link-escapes"].layers(sandbox.outside)
    blob = sandbox.root / "blob"
    layer.write(blob)
    archive = sandbox.root / "image.tar"
    run, _ = sandbox.run(_docker_archive(archive, blob.read_bytes(), hostile_outer=True))
    assert run.code == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"supplychain sbom: {archive}: corrupt pax header: size b'-1536'"
    )


def test_docker_archive_with_a_hostile_layer_fails_with_its_reason(sandbox: Sandbox) -> None:
    (layer,) = CASES["negative-pax-size"].layers(sandbox.outside)
    blob = sandbox.root / "blob"
    layer.write(blob)
    run, _ = sandbox.run(_docker_archive(sandbox.root / "image.tar", blob.read_bytes()))
    check_failure(run, "negative-pax-size")
    (good,) = CASES["link-escapes"].layers(sandbox.outside)
    good.write(blob)
    run, _ = sandbox.run(_docker_archive(sandbox.root / "good.tar", blob.read_bytes()))
    assert run.code == 0 and "pkg:npm/through-symlink@1.0.0" in purls(run)
