"""Streams one layer once and hands the catalogers the files they asked for.

The compression is sniffed from the first bytes (gzip via ``isal``, zstd, or a plain tar), never
from the media type a manifest claims. Nothing is unpacked: entries are parsed as they stream
past (:mod:`sbom.tar`) and only wanted regular files are kept (:mod:`sbom.spool`: in memory when
small, else in a temporary file with a name of our choosing, under byte budgets). Hostile entries
are neutralised here: paths are normalised and confined to the image root (``../`` and absolute
paths), symlinks are never followed, hard links only reuse data already read from the same
layer, device nodes and FIFOs are ignored, names that are not UTF-8 or hold a NUL are skipped
with a warning, a decompressed-size limit stops gzip and zstd bombs, and zstd windows are capped
and reserved from a shared memory pool.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, cast

from isal import igzip
from isal.igzip_lib import IsalError

from sbom.errors import CorruptLayerError, LayerError, LayerLimitError
from sbom.interface import FileEntry, LayerCataloger
from sbom.prefetch import Prefetch
from sbom.spool import MiB, ReadLimits, Spool
from sbom.tar import Stream, TarReader

__all__ = ["LayerError", "LayerFiles", "blob_digest", "normalise", "read_layer"]

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024 * 1024
"""Default limit on a layer's decompressed size."""
OPAQUE = ".wh..wh..opq"
WHITEOUT = ".wh."
MAX_WARNINGS = 100
"""Warnings kept (and logged) per layer; the rest are counted."""
_CHUNK = 1 << 20
_AHEAD = 4  # decompressed chunks queued by the inflating thread (sbom/prefetch.py)
_ZSTD_HEADER = 18  # ZSTD_FRAMEHEADERSIZE_MAX
_ZSTD_MIN_WINDOW = 8 * MiB  # what levels up to 19 use: later frames may need as much
_GZIP_MEMORY = 2 * MiB  # inflate window and buffers
_IsalError = cast("type[Exception]", IsalError)  # isal types it as an instance
_REGULAR = (b"0", b"\0", b"7")
_HARDLINK = (b"1",)


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


class _NotZstd(Exception):
    """Never raised: what :class:`_Limited` catches as zstd's error for other layers."""


class _Limited:
    """A read-only stream that raises :class:`LayerLimitError` past ``limit`` bytes."""

    def __init__(self, raw: IO[bytes], limit: int, zstd_error: type[Exception]) -> None:
        self._raw = raw
        self._limit = limit
        self._count = 0
        self._zstd_error = zstd_error

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size if size >= 0 else _CHUNK)
        except self._zstd_error as exc:
            if "too much memory" in str(exc):
                raise LayerLimitError(f"zstd frame needs a larger window: {exc}") from None
            raise CorruptLayerError(f"corrupt compressed layer: {exc}") from None
        except (OSError, EOFError, _IsalError) as exc:
            raise CorruptLayerError(f"corrupt compressed layer: {exc}") from None
        self._count += len(data)
        if self._count > self._limit:
            raise LayerLimitError(f"layer decompresses to more than {self._limit} bytes")
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


def _zstd_window(head: bytes, limits: ReadLimits) -> int:
    """The decompressor memory a zstd layer reserves, from its first frame's window size."""
    import zstandard

    try:
        window = zstandard.get_frame_parameters(head).window_size
    except zstandard.ZstdError as exc:
        raise CorruptLayerError(f"corrupt zstd layer: {exc}") from None
    if window > limits.zstd_window_bytes:
        raise LayerLimitError(
            f"zstd window of {window} bytes is over the {limits.zstd_window_bytes}-byte limit"
        )
    return min(max(window, _ZSTD_MIN_WINDOW), limits.zstd_window_bytes)


def _open(path: Path, offset: int, length: int | None) -> tuple[BinaryIO, _Raw, bytes]:
    """(the file, the hashing blob reader, the blob's first bytes) for the blob at ``path``."""
    handle = path.open("rb")
    try:
        handle.seek(offset)
        head = handle.read(_ZSTD_HEADER if length is None else min(_ZSTD_HEADER, length))
        handle.seek(offset)
    except BaseException:
        handle.close()
        raise
    return handle, _Raw(handle, length), head


def _decompressed(
    head: bytes, raw: Prefetch, max_bytes: int, limits: ReadLimits
) -> tuple[_Limited, int]:
    """(the decompressed and size-limited tar stream, the decompressor memory to reserve) of the
    blob ``raw`` streams, which starts with ``head``."""
    stream: IO[bytes]
    memory = 0
    zstd_error: type[Exception] = _NotZstd
    if head.startswith(GZIP_MAGIC):
        stream = cast(IO[bytes], igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
        memory = _GZIP_MEMORY
    elif head.startswith(ZSTD_MAGIC):
        import zstandard  # ~3 ms to import: only for a zstd layer

        window = _zstd_window(head, limits)
        zstd_error = zstandard.ZstdError
        decompressor = zstandard.ZstdDecompressor(max_window_size=window)
        stream = decompressor.stream_reader(
            cast(IO[bytes], raw), read_size=_CHUNK, read_across_frames=True
        )
        memory = window + _GZIP_MEMORY
    else:
        stream = cast(IO[bytes], raw)
    return _Limited(stream, max_bytes, zstd_error), memory


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


def _shown(name: str | bytes) -> str:
    text = repr(name)
    return text if len(text) <= 200 else text[:200] + "…"


def read_layer(
    path: Path,
    digest: str,
    catalogers: Iterable[LayerCataloger],
    max_bytes: int = DEFAULT_MAX_BYTES,
    offset: int = 0,
    length: int | None = None,
    *,
    spool: Spool,
    verify: bool = False,
) -> LayerFiles:
    """Stream the layer at ``path`` (``length`` bytes from ``offset`` when given) once and keep
    what ``catalogers`` want in ``spool``. With ``verify``, the blob must hash to ``digest``
    (checked in the same pass): a mismatch is a :class:`LayerError` and nothing it held is
    returned. Raises :class:`LayerError` (a subclass saying why, naming the layer) when the
    layer is corrupt or over a limit, never anything else for what the blob holds."""
    try:
        handle, raw, head = _open(path, offset, length)
        with handle:
            # one thread reads and hashes the blob, another inflates it, this one parses the tar
            with Prefetch(partial(raw.read, _CHUNK), _AHEAD) as blob:
                stream, memory = _decompressed(head, blob, max_bytes, spool.limits)
                with (
                    spool.decoder(memory + 2 * (_AHEAD + 1) * _CHUNK),  # + the chunks queued
                    Prefetch(partial(stream.read, _CHUNK), _AHEAD) as ahead,
                ):
                    found = _read(ahead, digest, list(catalogers), max_bytes, spool)
            # both threads have stopped: the rest of the blob (past the tar) is read here
            if verify and raw.digest() != digest:
                raise CorruptLayerError("the blob does not match its digest")
    except LayerError as exc:
        raise type(exc)(f"layer {digest}: {exc}") from None
    return found


def _read(
    stream: Stream, digest: str, wanting: list[LayerCataloger], max_bytes: int, spool: Spool
) -> LayerFiles:
    """The wanted files and deletions of the tar ``stream``."""
    files: dict[str, list[FileEntry]] = {c.name: [] for c in wanting}
    read: dict[str, FileEntry] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    warnings: list[str] = []
    skipped = 0
    layer = spool.layer()

    def warn(text: str) -> None:
        nonlocal skipped
        skipped += 1
        if len(warnings) < MAX_WARNINGS:
            warnings.append(text)
            log.warning("layer %s: %s", digest, text)

    tar = TarReader(stream, max_bytes)
    while (header := tar.next()) is not None:
        spool.check()
        try:
            name = header.name.decode("utf-8")
        except UnicodeDecodeError:
            warn(f"skipped entry whose name is not UTF-8: {_shown(header.name)}")
            continue
        if "\0" in name:
            warn(f"skipped entry whose name holds a NUL: {_shown(name)}")
            continue
        rel = normalise(name)
        if rel is None:
            if name.strip("./"):
                warn(f"skipped entry outside the image root: {_shown(name)}")
            continue
        base = posixpath.basename(rel)
        if base.startswith(WHITEOUT):
            layer.count()
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
                warn(f"skipped hard link {_shown(rel)} to a file not read in this layer")
                continue
            layer.count()
            entry = FileEntry(rel, found.source, header.mode)
        else:
            if header.size > max(c.max_size for c in who):
                warn(f"skipped {_shown(rel)}: {header.size} bytes is over the size limit")
                continue
            entry = layer.store(rel, header.mode, header.size, tar.copy_data)
            read[rel] = entry
        size = entry.size
        for cataloger in who:
            if size <= cataloger.max_size:
                files[cataloger.name].append(entry)
    if skipped > len(warnings):
        warnings.append(f"… and {skipped - len(warnings)} more entries skipped")
    return LayerFiles(digest, files, tuple(whiteouts), tuple(opaque), tuple(warnings))
