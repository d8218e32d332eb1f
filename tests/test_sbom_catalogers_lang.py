"""Language catalogers for binaries and archives, on artifacts built here, checked against Trivy.

Artifacts: a Go module binary built with Debian's ``golang-go`` (dependency vendored, version
stamped with ``-ldflags -X``), Debian's own ``gofmt``; a Rust binary built with cargo whose
``.dep-v0`` section is added with ``objcopy`` in cargo-auditable's documented format (Debian
ships neither cargo-auditable nor a binary built with it, and crates.io is unreachable);
Debian's ``commons-lang3`` jar (``libcommons-lang3-java``); the gemspecs Debian's ruby and
``ruby-rack`` install; a Composer ``installed.json`` per Composer's schema (Debian's php-*
packages install no Composer metadata). The only hand-assembled binary is a Go < 1.18
"pointer format" ELF, since no Go toolchain older than 1.18 is available here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sqlite3
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sbom.catalogers.golang import GoBinaryCataloger, parse_build_info
from sbom.catalogers.java import MAX_DEPTH, MAX_NESTED, JavaArchiveCataloger
from sbom.catalogers.php import ComposerInstalledCataloger
from sbom.catalogers.ruby import GemspecCataloger
from sbom.catalogers.rust import CargoAuditableCataloger, CargoLockCataloger
from sbom.interface import FileEntry, LayerCataloger, Package
from tests.support.tools import trivy
from tests.support.trivydb import build_trivy_db

CATALOGERS: list[LayerCataloger] = [
    GoBinaryCataloger(),
    CargoAuditableCataloger(),
    CargoLockCataloger(),
    JavaArchiveCataloger(),
    GemspecCataloger(),
    ComposerInstalledCataloger(),
]
LANG_TYPES = ("golang", "cargo", "maven", "gem", "composer")
JAR = Path("/usr/share/java/commons-lang3-3.12.0.jar")
GEM_DIRS = (
    Path("/usr/lib/ruby/gems/3.1.0/specifications"),
    Path("/usr/share/rubygems-integration/all/specifications"),
)
GOFMT = Path("/usr/lib/go/bin/gofmt")
COMMONS = "pkg:maven/org.apache.commons/commons-lang3@3.12.0"


@pytest.fixture(autouse=True, scope="module")
def _real_toolchains() -> None:
    """These tests build real artifacts: a missing toolchain is a failure, never a skip."""
    missing = [t for t in ("go", "cargo", "objcopy") if not shutil.which(t)]
    missing += [str(JAR)] if not JAR.exists() else []
    missing += [] if any(GEM_DIRS[1].glob("rack-*.gemspec")) else ["ruby-rack gemspecs"]
    assert not missing, (
        f"missing {missing}: apt-get install golang-go cargo binutils libcommons-lang3-java "
        "ruby-rack (.ci/run does)"
    )


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def catalog(cataloger: LayerCataloger, path: str, data: bytes, mode: int = 0o755) -> list[str]:
    assert cataloger.wants(path)
    found = cataloger.catalog([FileEntry(path, data, mode)], None)
    assert list(found) == [path]
    assert all(pkg.path == path for pkg in found[path])
    return [pkg.purl() for pkg in found[path]]


# --- artifacts -------------------------------------------------------------------------------


def build_go(work: Path, goos: str = "linux", goarch: str = "amd64") -> Path:
    src = work / "gomod"
    (src / "vendor/example.com/greet").mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(
        "module example.com/Hello\n\ngo 1.19\n\nrequire example.com/greet v1.2.3\n"
    )
    (src / "main.go").write_text(
        'package main\n\nimport "example.com/greet"\n\nfunc main() { println(greet.Hi()) }\n'
    )
    (src / "vendor/example.com/greet/greet.go").write_text(
        'package greet\n\nfunc Hi() string { return "hi" }\n'
    )
    (src / "vendor/modules.txt").write_text(
        "# example.com/greet v1.2.3\n## explicit\nexample.com/greet\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "GOCACHE": str(work / "gocache"),
        "GOFLAGS": "-mod=vendor",
        "GOPROXY": "off",
        "GOOS": goos,
        "GOARCH": goarch,
        "CGO_ENABLED": "0",
    }
    plain = (goos, goarch) == ("linux", "amd64")
    out = work / ("hello" if plain else f"hello-{goos}-{goarch}")
    run("go", "build", "-o", out, "-ldflags", "-X main.version=1.4.0", ".", cwd=src, env=env)
    return out


AUDIT = {
    "packages": [
        {"name": "rhello", "version": "0.1.0", "source": "local", "root": True,
         "dependencies": [1, 2, 3]},
        {"name": "serde", "version": "1.0.100", "source": "crates.io"},
        {"name": "Inflector", "version": "0.11.4", "source": "crates.io", "kind": "runtime"},
        {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"},
    ]
}  # fmt: skip


def build_rust(work: Path, section: bytes, name: str) -> Path:
    crate = work / "rhello"
    if not crate.exists():
        run("cargo", "new", "--bin", "--offline", "-q", crate)
        run("cargo", "build", "--release", "--offline", "-q", cwd=crate)
    blob, out = work / f"{name}.dep", work / f"{name}.bin"
    blob.write_bytes(section)
    binary = crate / "target/release/rhello"
    run("objcopy", "--add-section", f".dep-v0={blob}", binary, out)
    return out


# Go < 1.18 layout (Go 1.13-1.17): a ``.go.buildinfo`` section whose 32-byte header points at
# Go string headers for the version and the modinfo (wrapped in runtime/debug's sentinels), all
# in one writable PT_LOAD segment.
_MOD_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
_MOD_END = bytes.fromhex("f932433186182072008242104116d8f2")
OLD_MODINFO = (
    "path\texample.com/old/cmd/old\n"
    "mod\texample.com/old\tv0.3.1\th1:abc=\n"
    "dep\tgithub.com/pkg/errors\tv0.9.1\th1:def=\n"
    "dep\tgolang.org/x/text\tv0.3.0\n"
    "=>\tgolang.org/x/text\tv0.3.7\th1:ghi=\n"
)


def old_format_go_elf(go_version: str = "go1.16.15", modinfo: str = OLD_MODINFO) -> bytes:
    base, info_at, strings_at = 0x400000, 0x100, 0x140
    version, mod = go_version.encode(), _MOD_START + modinfo.encode() + _MOD_END
    shstrtab = b"\0.go.buildinfo\0.shstrtab\0"
    names_at = strings_at + len(version) + len(mod)
    shdrs_at = (names_at + len(shstrtab) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)
    ehdr = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, base, 64, shdrs_at, 0, 64, 56, 1, 64, 3, 2
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 6, 0, base, base, names_at, names_at, 0x1000)
    header = b"\xff Go buildinf:" + bytes([8, 0])
    header += struct.pack("<QQ", base + info_at + 32, base + info_at + 48)
    header += struct.pack("<QQ", base + strings_at, len(version))
    header += struct.pack("<QQ", base + strings_at + len(version), len(mod))
    shdrs = bytes(64)  # SHN_UNDEF
    shdrs += struct.pack("<IIQQQQIIQQ", 1, 1, 3, base + info_at, info_at, 64, 0, 0, 16, 0)
    shdrs += struct.pack("<IIQQQQIIQQ", 15, 3, 0, 0, names_at, len(shstrtab), 0, 0, 1, 0)
    image = bytearray(shdrs_at + len(shdrs))
    image[0 : len(ehdr) + len(phdr)] = ehdr + phdr
    image[info_at : info_at + len(header)] = header
    image[strings_at:names_at] = version + mod
    image[names_at : names_at + len(shstrtab)] = shstrtab
    image[shdrs_at:] = shdrs
    return bytes(image)


def composer_v2() -> bytes:
    packages = [
        {"name": "symfony/polyfill-ctype", "version": "v1.27.0", "license": ["MIT"]},
        {"name": "monolog/monolog", "version": "2.9.1", "license": "MIT"},
    ]
    return json.dumps({"packages": packages, "dev": True, "dev-package-names": []}).encode()


def zip_bytes(members: dict[str, bytes], level: int = 6) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def pom(artifact: str, version: str = "1.0", group: str = "com.example") -> bytes:
    return f"#x\ngroupId={group}\nartifactId={artifact}\nversion={version}\n".encode()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("lang")
    return {
        "go": build_go(work),
        "rust": build_rust(work, zlib.compress(json.dumps(AUDIT).encode()), "rhello"),
        "rust_bomb": build_rust(work, zlib.compress(b" " * (9 << 20), 1), "rbomb"),
        "plain_rust": work / "rhello/target/release/rhello",
    }


# --- per-ecosystem behaviour -----------------------------------------------------------------


def test_go_binary_reports_stdlib_deps_and_stamped_main_version(
    artifacts: dict[str, Path],
) -> None:
    go_version = run("go", "env", "GOVERSION").strip().removeprefix("go")
    found = GoBinaryCataloger().catalog(
        [FileEntry("app/hello", artifacts["go"].read_bytes(), 0o755)], None
    )["app/hello"]
    assert {(p.type, p.namespace, p.name, p.version) for p in found} == {
        ("golang", None, "stdlib", f"v{go_version}"),
        ("golang", "example.com", "greet", "v1.2.3"),
        ("golang", "example.com", "Hello", "1.4.0"),  # (devel) -> -X main.version
    }
    assert all(p.path == "app/hello" for p in found)


def test_go_main_version_from_ldflags_follows_trivys_precedence() -> None:
    def main_version(mod_version: str, ldflags: str) -> str:
        modinfo = f"mod\tgithub.com/x/app\t{mod_version}\t\nbuild\t-ldflags={ldflags}\n"
        (stdlib, main) = parse_build_info("go1.22.3 X:boringcrypto", modinfo)
        assert stdlib.purl() == "pkg:golang/stdlib@v1.22.3"
        return main.version

    cmd_and_main = '"-s -X main.version=1.0.0 -X github.com/x/app/cmd/app.version=2.0.0"'
    assert main_version("(devel)", cmd_and_main) == "2.0.0"
    assert main_version("v0.0.0-20240101-abcdef", "\"-X 'main.Version=v3.1.0'\"") == "v3.1.0"
    assert main_version("v1.5.0", '"-X main.version=9.9.9"') == "v1.5.0"
    assert main_version("(devel)", '"-X main.version=1 -X common.ver=2"') == ""  # ambiguous
    assert main_version("(devel)", '"-X main.version=not-semver"') == ""


def test_go_pre_1_18_pointer_format() -> None:
    purls = catalog(GoBinaryCataloger(), "app/old", old_format_go_elf())
    assert sorted(purls) == [
        "pkg:golang/example.com/old@v0.3.1",
        "pkg:golang/github.com/pkg/errors@v0.9.1",
        "pkg:golang/golang.org/x/text@v0.3.7",  # the => replacement wins
        "pkg:golang/stdlib@v1.16.15",
    ]


def test_binaries_need_the_execute_bit_and_their_own_format(artifacts: dict[str, Path]) -> None:
    go, rust = GoBinaryCataloger(), CargoAuditableCataloger()
    data = artifacts["go"].read_bytes()
    assert go.catalog([FileEntry("app/hello", data, 0o644)], None) == {"app/hello": []}
    assert catalog(rust, "app/hello", data) == []  # a Go binary has no .dep-v0
    assert catalog(go, "app/rhello", artifacts["plain_rust"].read_bytes()) == []
    assert go.wants("usr/bin/server") and go.wants("app/hello", 0o755)
    assert not go.wants("usr/lib/x86_64-linux-gnu/libc.so.6")
    assert not go.wants("usr/share/doc/bash/README") and not go.wants("app/tool", 0o644)


def test_malformed_binaries_are_skipped_with_a_warning(
    artifacts: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    good = artifacts["go"].read_bytes()
    files = [
        FileEntry("a/truncated", good[: len(good) // 3], 0o755),
        FileEntry("a/garbage", b"\x7fELF" + os.urandom(4096) + b"\xff Go buildinf:", 0o755),
        FileEntry("a/hello", good, 0o755),
    ]
    with caplog.at_level(logging.WARNING):
        found = GoBinaryCataloger().catalog(files, None)
    assert found["a/truncated"] == [] and found["a/garbage"] == []
    assert len(found["a/hello"]) == 3
    assert "a/garbage" in caplog.text


def test_cargo_auditable_reports_runtime_crates_only(artifacts: dict[str, Path]) -> None:
    purls = catalog(
        CargoAuditableCataloger(), "usr/local/bin/rhello", artifacts["rust"].read_bytes()
    )
    assert sorted(purls) == [
        "pkg:cargo/Inflector@0.11.4",
        "pkg:cargo/rhello@0.1.0",
        "pkg:cargo/serde@1.0.100",
    ]


def test_cargo_auditable_zlib_bomb_is_refused(
    artifacts: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert (
            catalog(CargoAuditableCataloger(), "bin/b", artifacts["rust_bomb"].read_bytes()) == []
        )
    assert "exceeds" in caplog.text


def test_cargo_lock_lists_every_package() -> None:
    lock = (
        b'version = 3\n\n[[package]]\nname = "anyhow"\nversion = "1.0.0"\n'
        b'source = "registry+https://github.com/rust-lang/crates.io-index"\n\n'
        b'[[package]]\nname = "myapp"\nversion = "0.3.0"\ndependencies = ["anyhow"]\n'
    )
    purls = catalog(CargoLockCataloger(), "src/Cargo.lock", lock, 0o644)
    assert purls == ["pkg:cargo/anyhow@1.0.0", "pkg:cargo/myapp@0.3.0"]
    assert catalog(CargoLockCataloger(), "x/Cargo.lock", b"[[package]\n", 0o644) == []


def test_debian_jar_nested_war_and_manifest_fallback() -> None:
    jar = JAR.read_bytes()
    java = JavaArchiveCataloger()
    assert catalog(java, "usr/share/java/commons-lang3-3.12.0.jar", jar) == [COMMONS]
    war = zip_bytes({"WEB-INF/lib/commons-lang3-3.12.0.jar": jar, "index.html": b"x"})
    found = java.catalog([FileEntry("srv/app.war", war)], None)["srv/app.war"]
    assert [p.purl() for p in found] == [COMMONS]
    assert ("java:archive", "srv/app.war/WEB-INF/lib/commons-lang3-3.12.0.jar") in found[
        0
    ].properties
    manifest = b"Manifest-Version: 1.0\r\nImplementation-Title: wid\r\n get\r\n"
    manifest += b"Implementation-Version: 2.1\r\nImplementation-Vendor-Id: com.example\r\n\r\n"
    manifest += b"Name: other\r\nImplementation-Version: 9\r\n"
    widget = zip_bytes({"META-INF/MANIFEST.MF": manifest})
    assert catalog(java, "lib/widget.jar", widget) == ["pkg:maven/com.example/widget@2.1"]
    no_ids = zip_bytes({"META-INF/MANIFEST.MF": b"Implementation-Title: Some Thing\n"})
    assert catalog(java, "lib/x.jar", no_ids) == []


def nest(levels: int) -> bytes:
    data = zip_bytes({"META-INF/maven/com.example/level/pom.properties": pom(f"l{levels}")})
    for level in range(levels - 1, -1, -1):
        data = zip_bytes({f"lib/l{level + 1}.jar": data, "p/pom.properties": pom(f"l{level}")})
    return data


def test_jar_nesting_depth_and_zip_bomb_limits(caplog: pytest.LogCaptureFixture) -> None:
    java = JavaArchiveCataloger()
    purls = catalog(java, "deep.jar", nest(MAX_DEPTH + 2))
    assert sorted(purls) == [f"pkg:maven/com.example/l{i}@1.0" for i in range(MAX_DEPTH + 1)]
    bomb = zip_bytes(
        {"lib/big.jar": bytes(MAX_NESTED + 1), "p/pom.properties": pom("outer"),
         "../../evil.jar": zip_bytes({"pom.properties": pom("evil")})},
        level=1,
    )  # fmt: skip
    assert len(bomb) < MAX_NESTED // 100
    with caplog.at_level(logging.WARNING):
        assert catalog(java, "bomb.jar", bomb) == ["pkg:maven/com.example/outer@1.0"]
    assert "nested size limit" in caplog.text and "escapes the archive" in caplog.text
    assert catalog(java, "broken.jar", JAR.read_bytes()[:5000]) == []


def test_gemspecs_installed_by_debian() -> None:
    spec = next(GEM_DIRS[1].glob("rack-*.gemspec"))  # whichever version Debian ships today
    version = spec.name.removeprefix("rack-").removesuffix(".gemspec")
    path = str(spec).lstrip("/")
    (found,) = GemspecCataloger().catalog([FileEntry(path, spec.read_bytes())], None)[path]
    assert (found.purl(), found.licenses) == (f"pkg:gem/rack@{version}", ("MIT",))
    assert not GemspecCataloger().wants("usr/lib/ruby/3.1.0/rack.gemspec")
    assert catalog(GemspecCataloger(), "x/specifications/bad.gemspec", b"puts 1\n", 0o644) == []


def test_composer_installed_v1_and_v2() -> None:
    php = ComposerInstalledCataloger()
    v2 = catalog(php, "srv/vendor/composer/installed.json", composer_v2(), 0o644)
    assert v2 == [
        "pkg:composer/symfony/polyfill-ctype@v1.27.0",
        "pkg:composer/monolog/monolog@2.9.1",
    ]
    v1 = json.dumps([{"name": "psr/log", "version": "1.1.4"}, {"name": 3}]).encode()
    assert catalog(php, "old/vendor/composer/installed.json", v1, 0o644) == [
        "pkg:composer/psr/log@1.1.4"
    ]
    assert catalog(php, "bad/vendor/composer/installed.json", b"{", 0o644) == []


# --- against Trivy ---------------------------------------------------------------------------


def write_java_db(cache: Path) -> None:
    """An EMPTY Java DB in trivy-java-db's layout, so that trivy runs offline (no lookups hit)."""
    db_dir = cache / "java-db"
    db_dir.mkdir(parents=True)
    with sqlite3.connect(db_dir / "trivy-java.db") as conn:
        conn.execute(
            "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT)"
        )
        conn.execute(
            "CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT)"
        )
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    meta = {"Version": 1, "NextUpdate": (now + timedelta(days=30)).strftime(stamp),
            "UpdatedAt": now.strftime(stamp), "DownloadedAt": now.strftime(stamp)}  # fmt: skip
    (db_dir / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture
def rootfs(tmp_path: Path, artifacts: dict[str, Path]) -> Path:
    root = tmp_path / "root"
    files: dict[str, bytes] = {
        "app/hello": artifacts["go"].read_bytes(),
        "app/old": old_format_go_elf(),
        "usr/lib/go/bin/gofmt": GOFMT.read_bytes(),
        "usr/local/bin/rhello": artifacts["rust"].read_bytes(),
        "srv/src/Cargo.lock": b'[[package]]\nname = "anyhow"\nversion = "1.0.0"\n',
        "usr/share/java/commons-lang3-3.12.0.jar": JAR.read_bytes(),
        "srv/app.war": zip_bytes({"WEB-INF/lib/commons-lang3-3.12.0.jar": JAR.read_bytes()}),
        "srv/www/vendor/composer/installed.json": composer_v2(),
    }
    for gem_dir in GEM_DIRS:
        for spec in gem_dir.rglob("*.gemspec"):
            files[
                f"var/lib/gems/{gem_dir.parts[-2]}/specifications/{spec.relative_to(gem_dir)}"
            ] = spec.read_bytes()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        (root / rel).chmod(0o755 if "/bin/" in rel or rel.startswith("app/") else 0o644)
    return root


def ours(root: Path) -> Iterator[Package]:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        entry = FileEntry(rel, path.read_bytes(), path.stat().st_mode & 0o7777)
        for cataloger in CATALOGERS:
            if cataloger.wants(rel) and len(entry.data) <= cataloger.max_size:
                yield from cataloger.catalog([entry], None)[rel]


def trivy_purls(tmp_path: Path, root: Path) -> dict[str, set[str]]:
    cache = tmp_path / "cache"
    build_trivy_db(cache, [])
    write_java_db(cache)
    out = run(
        trivy(), "rootfs", "--quiet", "--disable-telemetry", "--format", "cyclonedx",
        "--offline-scan", "--skip-db-update", "--skip-java-db-update", "--cache-dir", cache, root,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(out)
    found: dict[str, set[str]] = {t: set() for t in LANG_TYPES}
    for component in report.get("components", []):
        purl = component.get("purl", "")
        kind = purl.removeprefix("pkg:").split("/", 1)[0]
        if kind in found:
            found[kind].add(purl)
    return found


# Differences kept on purpose: Package.purl() (the fixed contract) does not lowercase Go module
# paths, which the purl spec and Trivy do; ours keeps the module path as Go spells it.
KNOWN = {"pkg:golang/example.com/Hello@1.4.0": "pkg:golang/example.com/hello@1.4.0"}


def test_purls_equal_trivys_for_each_ecosystem(tmp_path: Path, rootfs: Path) -> None:
    mine: dict[str, set[str]] = {t: set() for t in LANG_TYPES}
    for pkg in ours(rootfs):
        mine[pkg.type].add(KNOWN.get(pkg.purl(), pkg.purl()))
    theirs = trivy_purls(tmp_path, rootfs)
    assert all(mine[t] for t in LANG_TYPES)  # every ecosystem is exercised
    assert len(mine["gem"]) > 40 and COMMONS in mine["maven"]
    assert "pkg:golang/golang.org/x/text@v0.3.7" in mine["golang"]
    for kind in LANG_TYPES:
        assert mine[kind] == theirs[kind], kind


def test_go_and_rust_binaries_in_pe_and_macho_as_trivy_reads_them(tmp_path: Path) -> None:
    """Go cross-compiles to Windows (PE) and macOS (Mach-O) here; a cargo-auditable section is
    added to the PE with objcopy (binutils writes PE, not Mach-O: Rust in Mach-O is untested)."""
    windows = build_go(tmp_path, "windows", "amd64")
    blob = tmp_path / "dep.json.z"
    blob.write_bytes(zlib.compress(json.dumps(AUDIT).encode()))
    audited = tmp_path / "audited.exe"
    run("objcopy", "--add-section", f".dep-v0={blob}", windows, audited)
    root = tmp_path / "root"
    binaries = {
        "opt/win/hello.exe": windows,
        "opt/mac/hello-amd64": build_go(tmp_path, "darwin", "amd64"),
        "opt/mac/hello-arm64": build_go(tmp_path, "darwin", "arm64"),
        "opt/win/audited.exe": audited,
    }
    for rel, source in binaries.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / rel)
        (root / rel).chmod(0o755)
    mine: dict[str, set[str]] = {t: set() for t in LANG_TYPES}
    by_file: dict[str, set[str]] = {}
    for pkg in ours(root):
        mine[pkg.type].add(KNOWN.get(pkg.purl(), pkg.purl()))
        by_file.setdefault(pkg.path, set()).add(pkg.purl())
    for rel in ("opt/win/hello.exe", "opt/mac/hello-amd64", "opt/mac/hello-arm64"):
        assert {"pkg:golang/example.com/greet@v1.2.3", "pkg:golang/example.com/Hello@1.4.0"} <= (
            by_file[rel]
        ), rel
    assert "pkg:cargo/serde@1.0.100" in by_file["opt/win/audited.exe"]
    theirs = trivy_purls(tmp_path, root)
    for kind in ("golang", "cargo"):
        assert mine[kind] == theirs[kind], kind


def test_go_replace_directives(tmp_path: Path) -> None:
    """``replace`` by another module version wins over the module it replaces; a replacement by a
    local directory names no module and is not a package (Trivy gives it no purl)."""
    src = tmp_path / "app"
    (src / "greet").mkdir(parents=True)
    (src / "go.mod").write_text(
        "module example.com/app\n\ngo 1.19\n\nrequire example.com/greet v1.2.3\n\n"
        "replace example.com/greet => ./greet\n"
    )
    (src / "main.go").write_text(
        'package main\n\nimport "example.com/greet"\n\nfunc main() { println(greet.Hi()) }\n'
    )
    (src / "greet/go.mod").write_text("module example.com/greet\n\ngo 1.19\n")
    (src / "greet/greet.go").write_text('package greet\n\nfunc Hi() string { return "hi" }\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "c"),
           "GOPROXY": "off", "GOFLAGS": "-mod=mod"}  # fmt: skip
    run("go", "build", "-o", tmp_path / "app.bin", ".", cwd=src, env=env)
    purls = catalog(GoBinaryCataloger(), "usr/bin/app", (tmp_path / "app.bin").read_bytes())
    assert not any("greet" in purl for purl in purls)
    assert "pkg:golang/example.com/app" in purls
    # a module replaced by another module version: the replacement is what was compiled in
    modinfo = "path\tx/cmd\nmod\tx\tv1.0.0\ndep\told/mod\tv1.0.0\n=>\tnew/mod\tv2.1.0\th1:x=\n"
    found = {p.purl() for p in parse_build_info("go1.22.0", modinfo)}
    assert "pkg:golang/new/mod@v2.1.0" in found and not any("old/mod" in p for p in found)
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(tmp_path / "app.bin", root / "usr/bin/app")
    (root / "usr/bin/app").chmod(0o755)
    assert set(purls) == trivy_purls(tmp_path, root)["golang"]
