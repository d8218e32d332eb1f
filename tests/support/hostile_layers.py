"""Hostile image layers as real bytes, and a way to run ``supplychain sbom`` on them and see what
it cost (peak RSS, time, files written).

Tar headers are written by hand with :func:`header` (``tarfile`` refuses to write most of these
archives); big sparse content is made of one compressed chunk of zeros repeated (gzip members and
zstd frames may be concatenated), so a 2 GiB layer is a 2 MB blob built in milliseconds.
:data:`CASES` names every hostile image; ``bench/hostile_rss.py`` and
``tests/test_sbom_hostile_layers.py`` run them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from supplychain.registry.layout import write_layout

MiB = 1024 * 1024
BLOCK = 512
END = bytes(2 * BLOCK)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
OS_RELEASE = b'ID=debian\nVERSION_ID="12"\n'
ZERO_CHUNK = 16 * MiB
SUPPLYCHAIN = Path(sys.executable).parent / "supplychain"


def header(
    name: bytes,
    size: int = 0,
    kind: bytes = b"0",
    *,
    mode: int = 0o644,
    linkname: bytes = b"",
    size_field: bytes | None = None,
    checksum_delta: int = 0,
) -> bytes:
    """One ustar header block; ``size_field`` (12 bytes) replaces the octal size as is."""
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = b"%07o\0" % mode
    block[108:124] = b"0000000\0" * 2  # uid, gid
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"%011o\0" % 1_700_000_000
    block[156:157] = kind
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % (sum(block) + checksum_delta)
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def entry(name: bytes | str, data: bytes = b"", kind: bytes = b"0", **extra: object) -> bytes:
    """A header (with pax records for long names) and the padded data."""
    raw = name.encode() if isinstance(name, str) else name
    records = b""
    if len(raw) > 100:
        records += pax_record(b"path", raw)
    linkname = extra.get("linkname", b"")
    if isinstance(linkname, bytes) and len(linkname) > 100:
        records += pax_record(b"linkpath", linkname)
    out = pax(records) if records else b""
    return out + header(raw, len(data), kind, **extra) + pad(data)  # type: ignore[arg-type]


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode() + body) != length:
        length += 1
    return str(length).encode() + body


def pax(records: bytes, kind: bytes = b"x") -> bytes:
    """A pax extended header (``x``) carrying ``records`` as they are."""
    return header(b"PaxHeaders/x", len(records), kind) + pad(records)


def npm(name: str, version: str = "1.0.0") -> bytes:
    return json.dumps({"name": name, "version": version}).encode()


# --- compression --------------------------------------------------------------------------


@functools.cache
def _gzip_zeros(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=1, mtime=0)


@functools.cache
def _zstd_zeros(size: int) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(bytes(size))


def zeros(size: int, compress: str) -> Iterator[bytes]:
    """``size`` zero bytes as concatenated gzip members or zstd frames (or raw)."""
    make = {"gzip": _gzip_zeros, "zstd": _zstd_zeros}.get(compress)
    while size > 0:
        n = min(size, ZERO_CHUNK)
        yield make(n) if make else bytes(n)
        size -= n


def compressed(data: bytes, compress: str) -> bytes:
    if compress == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compress == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


@dataclass(frozen=True)
class Layer:
    """A layer blob as parts: raw tar bytes to compress, or ``("zeros", n)`` runs of zeros."""

    parts: tuple[bytes | int, ...]
    """Tar bytes, or an int: that many zero bytes of the tar stream."""
    compress: str = "gzip"
    """``gzip``, ``zstd`` or ``none``."""
    raw: bytes | None = None
    """The whole blob as is (already compressed), instead of ``parts``."""

    def write(self, target: Path) -> None:
        with target.open("wb") as out:
            if self.raw is not None:
                out.write(self.raw)
                return
            for part in self.parts:
                if isinstance(part, int):
                    for chunk in zeros(part, self.compress):
                        out.write(chunk)
                else:
                    out.write(compressed(part, self.compress))


def write_image(directory: Path, tag: str, layers: Iterable[Layer]) -> str:
    """An OCI layout at ``directory`` holding one image of ``layers``; returns ``oci:DIR:TAG``."""
    staging = Path(tempfile.mkdtemp(prefix="blobs-", dir=directory.parent))
    blobs: list[tuple[str, Path]] = []
    descriptors = []
    for index, layer in enumerate(layers):
        path = staging / f"layer{index}"
        layer.write(path)
        digest = _file_digest(path)
        blobs.append((digest, path))
        descriptors.append(
            {
                "mediaType": LAYER_TYPES[layer.compress],
                "digest": digest,
                "size": path.stat().st_size,
            }
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            # diff_ids would need every bomb decompressed; nothing here reads them
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
        }
    ).encode()
    config_path = staging / "config"
    config_path.write_bytes(config)
    config_digest = _file_digest(config_path)
    blobs.append((config_digest, config_path))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": descriptors,
        }
    ).encode()
    write_layout(
        directory,
        media_type=OCI_MANIFEST,
        manifest=manifest,
        manifest_digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
        blobs=blobs,
        ref_name=tag,
    )
    for _, path in blobs:
        path.unlink()
    staging.rmdir()
    return f"oci:{directory}:{tag}"


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MiB):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


# --- the hostile images --------------------------------------------------------------------


def _base() -> bytes:
    return entry("etc/os-release", OS_RELEASE) + entry(
        "app/node_modules/ok/package.json", npm("ok")
    )


def _big_files(
    count: int, size: int, name: str, *, mode: int = 0o755, head: bytes = b"", tail: bytes = b""
) -> Layer:
    """``count`` files of ``size`` bytes: ``head``, zeros, ``tail`` (a multiple of 512 long)."""
    parts: list[bytes | int] = [_base()]
    for index in range(count):
        parts.append(header(f"{name}{index}".encode(), size, mode=mode) + head)
        parts.append(size - len(head) - len(tail))
        parts.append(tail)
    parts.append(END)
    return Layer(tuple(parts))


def _many(count: int, wanted: bool) -> Layer:
    def name(i: int) -> str:
        return f"app/node_modules/p{i}/package.json" if wanted else f"srv/data/{i // 1000}/f{i}.txt"

    body = b"".join(entry(name(i), npm(f"p{i}") if wanted else b"x") for i in range(count))
    return Layer((_base() + body + END,))


def _huge_window_zstd() -> Layer:
    # a frame header by hand: no content size, window descriptor exponent 21 -> 2^31 bytes
    frame = b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([21 << 3])
    block = (1 | (1 << 1) | (512 << 3)).to_bytes(3, "little") + b"\0"  # last, RLE, 512 zeros
    return Layer((), "zstd", raw=frame + block)


def _wide_zstd(name: str, size: int) -> Layer:
    """A zstd layer whose frame uses a 128 MiB window (zstd --long), holding ``size`` zeros."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    out = _Sink()
    with cctx.stream_writer(out, closefd=False) as writer:
        writer.write(_base() + header(name.encode(), size))
        for _ in range(size // ZERO_CHUNK):
            writer.write(bytes(ZERO_CHUNK))
        writer.write(bytes(size % ZERO_CHUNK) + END)
    return Layer((), "zstd", raw=b"".join(out.parts))


class _Sink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def _deep(depth: int) -> bytes:
    return "/".join(["d"] * depth).encode() + b"/node_modules/deep/package.json"


@dataclass(frozen=True)
class Case:
    """A hostile image and the ``supplychain sbom`` options it is run with."""

    layers: Callable[[Path], list[Layer]]
    """Builds the layers, bottom first; links may point at the directory it is given, which
    ``supplychain sbom`` must leave alone."""
    args: tuple[str, ...] = ()
    """Extra command-line options."""
    push: bool = False
    """Also pushed to a registry by the tests."""


def _one(data: bytes, compress: str = "gzip") -> Callable[[Path], list[Layer]]:
    return lambda outside: [Layer((data,), compress)]


_GOOD = entry("app/node_modules/after/package.json", npm("after"))
_SMALL = 1024 * MiB  # --max-layer-bytes of the bomb cases: bombs stop at 1 GiB, not 8


def _bomb(compress: str) -> Callable[[Path], list[Layer]]:
    """Five unwanted 256 MiB files of zeros: 1.25 GiB in a 1-2 MB blob."""
    parts: list[bytes | int] = [_base()]
    for index in range(5):
        parts += [header(b"x%d.bin" % index, 256 * MiB), 256 * MiB]
    return lambda outside: [Layer((*parts, END), compress)]


def _executables(outside: Path) -> list[Layer]:
    """ELF-looking executables with the Go build-info magic at the very end: the catalogers must
    scan them whole (streamed from the spooled files)."""
    tail = pad(b"\xff Go buildinf:")
    return [_big_files(3, 256 * MiB, "opt/bin/tool", head=b"\x7fELF", tail=tail)]


def _link_escapes(outside: Path) -> list[Layer]:
    modules = "app/node_modules"
    passwd = b"root:x:0:0::/root:/bin/sh\n"
    data = (
        _base()
        + entry(f"{modules}/a/package.json", npm("a"))
        + entry(f"{modules}/h1/package.json", kind=b"1", linkname=b"../../etc/passwd")
        + entry(f"{modules}/h2/package.json", kind=b"1", linkname=b"/etc/passwd")
        + entry(f"{modules}/h3/package.json", kind=b"1", linkname=b"etc/shadow")
        + entry(
            f"{modules}/h4/package.json", kind=b"1", linkname=f"{modules}/a/package.json".encode()
        )
        + entry("escape", kind=b"2", linkname=str(outside).encode())
        + entry("escape/node_modules/s/package.json", npm("through-symlink"))
        + entry("chain1", kind=b"2", linkname=b"chain2")
        + entry("chain2", kind=b"2", linkname=b"chain1")
        + entry(f"{modules}/abs", kind=b"2", linkname=b"/")
        + entry(f"{modules}/abs/etc/passwd", passwd)
        + entry("/etc/passwd", passwd)
        + entry(f"../../../../../..{outside}/evil/node_modules/e/package.json", npm("evil"))
        + entry(
            f"{modules}/h5/package.json", kind=b"1", linkname=b"escape/node_modules/s/package.json"
        )
        + END
    )
    return [Layer((data,))]


def _bad_names(outside: Path) -> list[Layer]:
    data = (
        _base()
        + pax(pax_record(b"path", b"app/node_modules/nul\0/package.json"))
        + header(b"placeholder", len(npm("nul")))
        + pad(npm("nul"))
        + entry(b"app/node_modules/\xe9t\xe9/package.json", npm("latin1"))
        + entry(b"app/node_modules/\xff\xfe/package.json", npm("bad-utf8"))
        + END
    )
    return [Layer((data,))]


def _dpkg_stanzas(outside: Path) -> list[Layer]:
    """A 16 MiB dpkg status file of 300k minimal stanzas: 300k packages from one small file."""
    stanza = b"Package: p%d\nStatus: install ok installed\nVersion: 1\n\n"
    status = b"".join(stanza % i for i in range(300_000))
    return [
        Layer((entry("etc/os-release", OS_RELEASE) + entry("var/lib/dpkg/status", status) + END,))
    ]


def _nested(outside: Path) -> list[Layer]:
    dirs = b"".join(entry(b"d/" * n, kind=b"5") for n in range(1, 20_000, 500))
    return [Layer((_base() + dirs + entry(_deep(20_000), npm("deep")) + END,))]


CASES: dict[str, Case] = {
    "negative-pax-size": Case(
        _one(_base() + pax(pax_record(b"size", b"-1536")) + header(b"x.bin", 0) + _GOOD + END),
        push=True,
    ),
    "huge-octal-size": Case(
        _one(_base() + header(b"x.bin", size_field=b"777777777777") + _GOOD + END)
    ),
    "base256-size-huge": Case(
        _one(_base() + header(b"x.bin", size_field=b"\x80" + (1 << 80).to_bytes(11, "big")) + END)
    ),
    "base256-size-negative": Case(
        _one(_base() + header(b"x.bin", size_field=b"\xff" * 11 + b"\xfa") + _GOOD + END)
    ),
    "truncated-archive": Case(
        _one(_base() + header(b"app/node_modules/cut/package.json", 4096) + b"{" * 1000)
    ),
    "oversized-pax-record": Case(
        _one(_base() + pax(pax_record(b"comment", b"x" * (2 * MiB))) + _GOOD + END)
    ),
    "oversized-long-name": Case(
        _one(_base() + header(b"././@LongLink", 128 * 1024, b"L") + pad(b"a" * 128 * 1024) + END)
    ),
    "bad-header-checksum": Case(
        _one(_base() + header(b"app/node_modules/x/package.json", 2, checksum_delta=1) + pad(b"{}"))
    ),
    "gzip-bomb": Case(_bomb("gzip"), ("--max-layer-bytes", str(_SMALL)), push=True),
    "zstd-bomb": Case(_bomb("zstd"), ("--max-layer-bytes", str(_SMALL))),
    "zstd-window-over-limit": Case(lambda outside: [_huge_window_zstd()]),
    "zstd-128MiB-windows-in-parallel": Case(
        lambda outside: [_wide_zstd("a.bin", 256 * MiB), _wide_zstd("b.bin", 256 * MiB)]
    ),
    "8x256MiB-extensionless-files": Case(
        lambda outside: [_big_files(8, 256 * MiB, "usr/local/bin/tool")], push=True
    ),
    "3x256MiB-executables-with-go-marker": Case(_executables),
    "90k-tiny-wanted-files": Case(lambda outside: [_many(90_000, wanted=True)]),
    "100k-tiny-unwanted-files": Case(lambda outside: [_many(100_000, wanted=False)]),
    "300k-dpkg-stanzas": Case(_dpkg_stanzas),
    "link-escapes": Case(_link_escapes),
    "bad-names": Case(_bad_names),
    "deeply-nested-paths": Case(_nested),
    "name-over-limit": Case(_one(_base() + entry(_deep(40_000), npm("deeper")) + END)),
}


# --- running supplychain sbom ----------------------------------------------------------------


# The peak RSS a parent reads with wait4 (or RUSAGE_CHILDREN) includes the parent's own RSS when
# it forked: Linux carries the old address space's high-water mark across exec. So commands run
# under a small launcher (a fresh Python process, ~10 MiB) that reports its child's figure, and
# kills it (exit -9) when its RSS passes a cap or its time is up.
_LAUNCHER = """
import json, os, signal, subprocess, sys, time
report, cap, timeout, command = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
start = time.monotonic()
proc = subprocess.Popen(command)
killed = ""
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    try:
        with open(f"/proc/{proc.pid}/status") as handle:
            rss = next(int(x.split()[1]) for x in handle if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        rss = 0
    if not killed and (cap and rss > cap or time.monotonic() - start > timeout):
        killed = "rss" if cap and rss > cap else "timeout"
        proc.send_signal(signal.SIGKILL)
    time.sleep(0.02)
with open(report, "w") as out:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss, killed], out)
"""


@dataclass(frozen=True)
class Run:
    """What one command did."""

    code: int
    """Exit code (-9 when it was killed: see :attr:`killed`)."""
    stdout: bytes
    """Its output (the SBOM, when it succeeded)."""
    stderr: str
    """Errors and warnings."""
    seconds: float
    """Wall time."""
    peak_rss_mib: float
    """The command's peak resident set size (``ru_maxrss``)."""
    seen: frozenset[Path]
    """Every file seen under ``watch`` while it ran (polled)."""
    killed: str = ""
    """``rss`` or ``timeout`` when it was killed for going over the cap or the time."""


def measure(
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    watch: Path | None = None,
    timeout: float = 120.0,
    max_rss_mib: int = 0,
) -> Run:
    """Run ``command``, kill it after ``timeout`` seconds or past ``max_rss_mib`` (0: no cap)."""
    start = time.monotonic()
    seen: set[Path] = set()
    with tempfile.TemporaryDirectory(prefix="measure-") as scratch:
        report = Path(scratch) / "report.json"
        out, err = Path(scratch) / "out", Path(scratch) / "err"
        limits = [str(max_rss_mib * 1024), str(timeout)]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(report), *limits, *command],
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            try:
                while proc.poll() is None and time.monotonic() - start < timeout + 30:
                    if watch is not None:  # os.walk, unlike rglob, ignores vanished folders
                        seen.update(Path(d, f) for d, _, files in os.walk(watch) for f in files)
                    time.sleep(0.02)
            finally:  # the deadline, or the caller interrupted: the launcher and its child go
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        done = json.loads(report.read_text()) if report.exists() else (-9, 0, "timeout")
        code, maxrss, killed = done
        return Run(
            code,
            out.read_bytes(),
            err.read_text("utf-8", "replace"),
            time.monotonic() - start,
            maxrss / 1024,
            frozenset(seen),
            str(killed),
        )


def sandbox_env(tmpdir: Path, home: Path) -> dict[str, str]:
    """The environment with ``TMPDIR`` and ``HOME`` (and so the default caches) redirected."""
    return {
        **os.environ,
        "TMPDIR": str(tmpdir),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }


def run_sbom(
    image: str,
    *args: str,
    cache: Path,
    tmpdir: Path,
    home: Path,
    watch: Path | None = None,
    timeout: float = 120.0,
) -> Run:
    """Run ``supplychain sbom IMAGE`` with ``TMPDIR``, ``HOME`` and the cache set."""
    command = [str(SUPPLYCHAIN), "sbom", image, "--cache-dir", str(cache), *args]
    return measure(command, env=sandbox_env(tmpdir, home), cwd=home, watch=watch, timeout=timeout)
