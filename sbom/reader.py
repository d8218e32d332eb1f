"""Streams one layer once and hands the catalogers the files they asked for.

The compression is sniffed from the first bytes (gzip via ``isal``, zstd, or a plain tar), never
from the media type a manifest claims. Nothing is written to disk: entries are parsed as they
stream past and only wanted regular files are read into memory. Hostile entries are neutralised
here: paths are normalised and confined to the image root (``../`` and absolute paths), symlinks
are never followed, hard links only reuse data already read from the same layer, device nodes
and FIFOs are ignored, names that are not UTF-8 are skipped with a warning, and a decompressed
size limit stops gzip bombs.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard
from isal import igzip
from isal.igzip_lib import IsalError

from sbom.interface import FileEntry, LayerCataloger

__all__ = ["LayerError", "LayerFiles", "blob_digest", "normalise", "open_layer", "read_layer"]

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024 * 1024
"""Default limit on a layer's decompressed size."""
OPAQUE = ".wh..wh..opq"
WHITEOUT = ".wh."
_CHUNK = 1 << 20
_IsalError = cast("type[Exception]", IsalError)  # isal types it as an instance
_REGULAR = (b"0", b"\0", b"7")
_HARDLINK = (b"1",)


class LayerError(Exception):
    """A layer could not be read: corrupt compression, not a tar, or over the size limit."""


@dataclass(frozen=True)
class LayerFiles:
    """What one layer contributes: the wanted files and the deletions it makes."""

    digest: str
    """Layer digest."""
    files: dict[str, list[FileEntry]] = field(default_factory=dict)
    """Wanted regular files per cataloger name."""
    whiteouts: tuple[str, ...] = ()
    """Paths this layer deletes from the layers below (``.wh.<name>``)."""
    opaque_dirs: tuple[str, ...] = ()
    """Directories whose lower-layer content this layer hides (``.wh..wh..opq``)."""
    warnings: tuple[str, ...] = ()
    """Entries skipped, and why."""


class _EndOfStream(LayerError):
    """The stream ended in the middle of the archive."""


class _Limited:
    """A read-only stream that raises :class:`LayerError` past ``limit`` bytes."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._count = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size if size >= 0 else _CHUNK)
        except (OSError, EOFError, zstandard.ZstdError, _IsalError) as exc:
            raise LayerError(f"corrupt compressed layer: {exc}") from None
        self._count += len(data)
        if self._count > self._limit:
            raise LayerError(f"layer decompresses to more than {self._limit} bytes")
        return data


class _Raw:
    """The blob's bytes (``length`` of them, when given), hashed as they are read."""

    def __init__(self, raw: IO[bytes], length: int | None) -> None:
        self._raw = raw
        self._left = length
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self._left is not None:
            size = self._left if size < 0 else min(size, self._left)
        data = self._raw.read(size)
        if self._left is not None:
            self._left -= len(data)
        self.sha256.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def digest(self) -> str:
        """``sha256:<hex>`` of what was read, after reading the rest of the blob."""
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.sha256.hexdigest()


def open_layer(
    path: Path, max_bytes: int = DEFAULT_MAX_BYTES, offset: int = 0, length: int | None = None
) -> tuple[BinaryIO, _Raw, _Limited]:
    """Open the blob at ``path`` (or its ``length`` bytes from ``offset``) and return (the file,
    the hashing blob reader, a decompressing, size-limited reader of the tar stream)."""
    handle = path.open("rb")
    handle.seek(offset)
    magic = handle.read(4)
    handle.seek(offset)
    raw = _Raw(handle, length)
    stream: IO[bytes]
    if magic.startswith(GZIP_MAGIC):
        gzip = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
        stream = cast(IO[bytes], gzip)
    elif magic == ZSTD_MAGIC:
        stream = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], raw), read_size=_CHUNK)
    else:
        stream = cast(IO[bytes], raw)
    return handle, raw, _Limited(stream, max_bytes)


def blob_digest(path: Path, offset: int = 0, length: int | None = None) -> str:
    """``sha256:<hex>`` of a blob (``length`` bytes from ``offset`` when given)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        return _Raw(handle, length).digest()


def normalise(name: str) -> str | None:
    """The path relative to the image root (absolute paths are confined to it), or None when it
    is empty or climbs with ``..``."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


@dataclass(frozen=True)
class _Header:
    name: bytes
    linkname: bytes
    kind: bytes
    mode: int
    size: int


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for big numbers
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise LayerError(f"corrupt tar header field {field!r}") from None


def _pax(data: bytes) -> dict[bytes, bytes]:
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerError("corrupt pax header") from None
        if length <= 0:
            raise LayerError("corrupt pax header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


class _Tar:
    """A minimal streaming tar parser (ustar, GNU long names, pax): headers are parsed, the data
    of entries nobody wants is skipped without copying."""

    def __init__(self, stream: _Limited) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._pending = 0  # data bytes (with padding) of the current entry not yet consumed

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < size:
            chunk = self._stream.read(max(_CHUNK, size - have))
            if not chunk:
                raise _EndOfStream("truncated tar stream")
            parts.append(chunk)
            have += len(chunk)
        joined = b"".join(parts)
        self._buf, self._pos = joined, size
        return joined[:size]

    def _skip(self, size: int) -> None:
        left = len(self._buf) - self._pos
        if size <= left:
            self._pos += size
            return
        size -= left
        self._buf, self._pos = b"", 0
        while size > 0:
            chunk = self._stream.read(_CHUNK)
            if not chunk:
                raise LayerError("truncated tar stream")
            if len(chunk) > size:
                self._buf, self._pos = chunk, size
                return
            size -= len(chunk)

    def data(self, size: int) -> bytes:
        """The current entry's data (call at most once per entry)."""
        padded, self._pending = self._pending, 0
        out = self._take(padded)
        return out[:size]

    def next(self) -> _Header | None:
        """The next entry's header, or None at the end of the archive."""
        self._skip(self._pending)
        self._pending = 0
        long_name: bytes | None = None
        long_link: bytes | None = None
        pax: dict[bytes, bytes] = {}
        while True:
            try:
                block = self._take(512)
            except _EndOfStream:
                if not self._buf[self._pos :] and long_name is None and not pax:
                    return None  # archive without the end-of-archive blocks
                raise
            if block == bytes(512):
                while self._stream.read(_CHUNK):  # the padding: also checks the gzip CRC
                    pass
                return None
            checksum = _octal(block[148:156])
            if checksum not in (sum(block[:148]) + 256 + sum(block[156:]),):
                raise LayerError("corrupt tar header (bad checksum)")
            kind = block[156:157]
            size = _octal(block[124:136])
            padded = (size + 511) & ~511
            if kind in (b"L", b"K", b"x"):
                payload = self._take(padded)[:size]
                if kind == b"L":
                    long_name = payload.split(b"\0", 1)[0]
                elif kind == b"K":
                    long_link = payload.split(b"\0", 1)[0]
                else:
                    pax.update(_pax(payload))
                continue
            if kind == b"g":
                self._skip(padded)
                continue
            name = block[:100].split(b"\0", 1)[0]
            if block[257:262] == b"ustar" and block[345:346] != b"\0":
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
            name = pax.get(b"path", long_name if long_name is not None else name)
            link = pax.get(b"linkpath", long_link or block[157:257].split(b"\0", 1)[0])
            if b"size" in pax:
                size = int(pax[b"size"])
                padded = (size + 511) & ~511
            self._pending = padded
            return _Header(name, link, kind, _octal(block[100:108]), size)


def read_layer(
    path: Path,
    digest: str,
    catalogers: Iterable[LayerCataloger],
    max_bytes: int = DEFAULT_MAX_BYTES,
    offset: int = 0,
    length: int | None = None,
    *,
    verify: bool = False,
) -> LayerFiles:
    """Stream the layer at ``path`` (``length`` bytes from ``offset`` when given) once and
    collect what ``catalogers`` want. With ``verify``, the blob must hash to ``digest`` (checked
    in the same pass): a mismatch is a :class:`LayerError` and nothing it held is returned."""
    wanting = list(catalogers)
    files: dict[str, list[FileEntry]] = {c.name: [] for c in wanting}
    read: dict[str, FileEntry] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        log.warning("layer %s: %s", digest, text)

    handle, raw, stream = open_layer(path, max_bytes, offset, length)
    with handle:
        tar = _Tar(stream)
        while (header := tar.next()) is not None:
            try:
                name = header.name.decode("utf-8")
            except UnicodeDecodeError:
                warn(f"skipped entry whose name is not UTF-8: {header.name!r}")
                continue
            rel = normalise(name)
            if rel is None:
                if name.strip("./"):
                    warn(f"skipped entry outside the image root: {name!r}")
                continue
            base = posixpath.basename(rel)
            if base.startswith(WHITEOUT):
                parent = posixpath.dirname(rel)
                if base == OPAQUE:
                    opaque.append(parent)
                else:
                    whiteouts.append(posixpath.join(parent, base[len(WHITEOUT) :]))
                continue
            if header.kind not in _REGULAR + _HARDLINK:
                continue  # directories, symlinks (never followed), devices, FIFOs
            who = [c for c in wanting if c.wants(rel)]
            if not who:
                continue
            if header.kind in _HARDLINK:
                target = normalise(header.linkname.decode("utf-8", "replace"))
                found = read.get(target) if target else None
                if found is None:
                    warn(f"skipped hard link {rel!r} to a file not read in this layer")
                    continue
                entry = FileEntry(rel, found.data, header.mode & 0o7777)
            else:
                if header.size > max(c.max_size for c in who):
                    warn(f"skipped {rel!r}: {header.size} bytes is over the size limit")
                    continue
                entry = FileEntry(rel, tar.data(header.size), header.mode & 0o7777)
                read[rel] = entry
            for cataloger in who:
                if len(entry.data) <= cataloger.max_size:
                    files[cataloger.name].append(entry)
        if verify and raw.digest() != digest:
            raise LayerError(f"layer {digest} does not match its digest")
    return LayerFiles(digest, files, tuple(whiteouts), tuple(opaque), tuple(warnings))
