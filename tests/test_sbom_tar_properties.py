"""Property-based tests of the layer reader: whatever the bytes, :func:`read_layer` returns or
raises :class:`LayerError`, never anything else, and never hangs (a timer interrupts it).

Inputs are arbitrary byte strings (plain, gzip'd, zstd'd), and valid tars written by ``tarfile``
in its three formats, then mutated: bytes flipped, cut, inserted, header fields overwritten with
arbitrary bytes (with the header checksum fixed up, so the parser gets past it), pax records
with arbitrary lengths and values. Valid tars must read back exactly as ``tarfile`` reads them.
"""

from __future__ import annotations

import gzip
import io
import signal
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbom.catalogers import CATALOGERS
from sbom.errors import LayerError
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package
from sbom.reader import LayerFiles, normalise, read_layer
from sbom.spool import ReadLimits, Spool

SETTINGS = settings(
    database=None,  # nothing written into the checkout; a failure prints its example
    max_examples=250,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HANG_SECONDS = 10


class Everything(LayerCataloger):
    """Wants every file (so every entry goes through the spool)."""

    name = "everything"
    version = 1
    max_size = 1 << 20

    def wants(self, path: str) -> bool:
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        return {}


class Hang(Exception):
    """read_layer ran longer than HANG_SECONDS."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"read_layer still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read(blob: bytes, *, wanting: bool = True) -> LayerFiles | LayerError:
    """read_layer on ``blob`` with small limits (files over 64 bytes spill to disk); without
    ``wanting`` no cataloger wants anything, so no budget can stop a reader that loops."""
    with tempfile.TemporaryDirectory(prefix="tar-props-") as tmp:
        path = Path(tmp) / "blob"
        path.write_bytes(blob)
        limits = ReadLimits(layer_wanted_bytes=4 << 20, image_entries=1000, memory_file_bytes=64)
        spool = Spool(Path(tmp), limits)
        catalogers = [*CATALOGERS.values(), Everything()] if wanting else []
        try:
            with deadline(HANG_SECONDS):
                result = read_layer(path, "sha256:" + "0" * 64, catalogers, 8 << 20, spool=spool)
            # the files are readable while the spool lives, and exactly as long as said
            for entry in result.files.get("everything", []):
                assert len(entry.data) == entry.size
            return result
        except LayerError as exc:
            return exc
        finally:
            spool.close()
            assert [p.name for p in Path(tmp).iterdir()] == ["blob"]


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


COMPRESSIONS = st.sampled_from(["none", "gzip", "zstd"])


@SETTINGS
@given(st.binary(max_size=4096), COMPRESSIONS, st.booleans())
def test_arbitrary_bytes_are_read_or_refused(blob: bytes, how: str, wanting: bool) -> None:
    read(compress(blob, how), wanting=wanting)


@SETTINGS
@given(st.lists(st.binary(min_size=512, max_size=512), max_size=8), COMPRESSIONS, st.booleans())
def test_arbitrary_header_blocks_are_read_or_refused(
    blocks: list[bytes], how: str, wanting: bool
) -> None:
    read(compress(b"".join(fix_checksum(b) for b in blocks), how), wanting=wanting)


# --- valid tars, and mutations of them ------------------------------------------------------

NAMES = st.lists(
    st.sampled_from(["a", "b", "node_modules", "package.json", "..", ".", "x" * 120, "é"]),
    min_size=1,
    max_size=5,
).map("/".join)
FORMATS = st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE])


def make_tar(entries: Sequence[tuple[str, bytes, bytes]], fmt: int) -> tuple[bytes, list[int]]:
    """The tar, and where each of its headers (and its end) starts."""
    out = io.BytesIO()
    starts = []
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data, kind in entries:
            starts.append(out.tell())
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = "a/package.json"
                tar.addfile(info)
        starts.append(out.tell())
    return out.getvalue(), starts


def fix_checksum(block: bytes) -> bytes:
    if len(block) != 512:
        return block
    fixed = bytearray(block)
    fixed[148:156] = b" " * 8
    fixed[148:156] = b"%06o\0 " % sum(fixed)
    return bytes(fixed)


@st.composite
def valid_tars(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    entries = draw(
        st.lists(st.tuples(NAMES, st.binary(max_size=1500), KINDS), max_size=6),
    )
    fmt = draw(FORMATS)
    try:
        return make_tar(entries, fmt)
    except ValueError:  # a name ustar cannot hold
        return make_tar(entries, tarfile.PAX_FORMAT)


FIELDS = [(0, 100), (100, 8), (124, 12), (148, 8), (156, 1), (157, 100), (257, 8), (345, 155)]
PAX_VALUES = st.one_of(
    st.integers(-(1 << 70), 1 << 70).map(lambda n: str(n).encode()),
    st.integers(-20, 20).map(lambda n: str(512 * n).encode()),  # whole blocks, back or forth
    st.just(b"BACK"),  # exactly back to the pax header itself: a reader that obeys loops
    st.binary(max_size=30),
    st.sampled_from([b"-1536", b"+12", b"1_000", b" 7", b"0x10", b"", b"99999999999999999999"]),
)


@st.composite
def pax_headers(draw: st.DrawFn) -> bytes:
    """A pax header (``x``) whose one record has an arbitrary key, value and length."""
    key = draw(st.sampled_from([b"size", b"size", b"path", b"linkpath", b"comment", b""]))
    value = draw(PAX_VALUES)
    if value == b"BACK":
        value = b"-1536"  # pax header, one payload block, the next header: back to the start
    record = b" " + key + b"=" + value + b"\n"
    length = len(record) + 1
    while len(str(length)) + len(record) != length:  # the length counts its own digits
        length += 1
    length = draw(st.one_of(st.just(length), st.integers(-5, 2000)))
    payload = str(length).encode() + record
    header = bytearray(tarfile.TarInfo("pax").tobuf(tarfile.USTAR_FORMAT))
    header[124:136] = b"%011o\0" % len(payload)
    header[156:157] = b"x"
    return fix_checksum(bytes(header)) + payload + bytes(-len(payload) % 512)


@st.composite
def mutated_tars(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_tars())[0])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "field", "pax"]))
        if op == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(max_size=600))
        elif op == "field" and len(data) >= 512:
            start = 512 * draw(st.integers(0, len(data) // 512 - 1))
            offset, size = draw(st.sampled_from(FIELDS))
            value = draw(st.binary(min_size=size, max_size=size))
            block = bytearray(data[start : start + 512])
            block[offset : offset + size] = value
            data[start : start + 512] = fix_checksum(bytes(block))
        elif op == "pax":
            at = draw(st.integers(0, len(data) // 512).map((512).__mul__))
            data[at:at] = draw(pax_headers())
    return bytes(data)


@SETTINGS
@given(mutated_tars(), COMPRESSIONS, st.booleans())
def test_mutated_tars_are_read_or_refused(data: bytes, how: str, wanting: bool) -> None:
    read(compress(data, how), wanting=wanting)


@SETTINGS
@given(valid_tars(), st.data(), st.booleans())
def test_pax_records_before_any_header_are_obeyed_or_refused(
    tar: tuple[bytes, list[int]], data: st.DataObject, wanting: bool
) -> None:
    valid, starts = tar
    at = data.draw(st.sampled_from(starts))
    read(valid[:at] + data.draw(pax_headers()) + valid[at:], wanting=wanting)


@SETTINGS
@given(valid_tars().map(lambda tar: tar[0]), COMPRESSIONS)
def test_valid_tars_read_back_as_tarfile_reads_them(data: bytes, how: str) -> None:
    expected: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            rel = normalise(member.name)
            handle = tar.extractfile(member) if member.isreg() else None
            if rel is not None and handle is not None:
                expected[rel] = handle.read()
    result = read(compress(data, how))
    assert isinstance(result, LayerFiles), result
    got = {entry.path: entry.data for entry in result.files["everything"]}
    hard_links = {e.path for e in result.files["everything"]} - set(expected)
    assert {k: v for k, v in got.items() if k not in hard_links} == expected


def _normalise_by_parts(name: str) -> str | None:
    """The reader's rule spelled out: drop empty and ``.`` parts, refuse ``..``."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return None if not parts or ".." in parts else "/".join(parts)


@SETTINGS
@given(st.text(alphabet="ab./\\ ", max_size=24))
def test_normalise_is_the_rule_spelled_out(name: str) -> None:
    """Its shortcut for the usual names gives what splitting them gives, for any name."""
    assert normalise(name) == _normalise_by_parts(name)
    assert normalise("./" + name) == _normalise_by_parts("./" + name)
