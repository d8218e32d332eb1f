"""Streams one layer once and hands the catalogers the files they asked for.

The blob is read, hashed and inflated by :mod:`sbom.blob` (compression sniffed from its first
bytes, never from the media type a manifest claims). Nothing is unpacked: entries are parsed as
they stream past (:mod:`sbom.tar`) and only wanted regular files are kept (:mod:`sbom.spool`: in
memory when small, else in a temporary file with a name of our choosing, under byte budgets).
Hostile entries are neutralised here: paths are normalised and confined to the image root
(``../`` and absolute paths), symlinks are never followed, hard links only reuse data already
read from the same layer, device nodes and FIFOs are ignored, names that are not UTF-8 or hold a
NUL are skipped with a warning; a decompressed-size limit stops gzip and zstd bombs, and zstd
windows are capped and reserved from a shared memory pool.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sbom.blob import Inflating
from sbom.errors import CorruptLayerError, LayerError
from sbom.interface import FileEntry, LayerCataloger, extension
from sbom.spool import Spool
from sbom.tar import Stream, TarReader

__all__ = ["LayerError", "LayerFiles", "normalise", "read_layer"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 1024 * 1024 * 1024
"""Default limit on a layer's decompressed size."""
OPAQUE = ".wh..wh..opq"
WHITEOUT = ".wh."
MAX_WARNINGS = 100
"""Warnings kept (and logged) per layer; the rest are counted."""
_REGULAR = (b"0", b"\0", b"7")
HandOff = Callable[[LayerCataloger, FileEntry], None]
"""Takes a file that its cataloger catalogues on its own, to catalogue it in another thread."""
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


def normalise(name: str) -> str | None:
    """The path relative to the image root (absolute paths are confined to it), or None when it
    is empty or climbs with ``..``."""
    rest = name[2:] if name.startswith("./") else name
    if rest and rest[0] not in "./" and "//" not in rest and "/." not in rest and rest[-1] != "/":
        return rest  # the usual name, which has no empty, "." or ".." part: not split
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
    started: Inflating | None = None,
    hand_off: HandOff | None = None,
) -> LayerFiles:
    """Stream the layer at ``path`` (``length`` bytes from ``offset`` when given) once and keep
    what ``catalogers`` want in ``spool`` (from ``started`` when
    :func:`sbom.blob.inflate_early` opened the blob already). With ``verify``, the blob must hash
    to ``digest`` (checked in the same pass): a mismatch is a :class:`LayerError` and nothing it
    held is returned. Raises :class:`LayerError` (a subclass saying why, naming the layer) when
    the layer is corrupt or over a limit, never anything else for what the blob holds.
    ``hand_off`` receives, as they are read, the files their cataloger catalogues one by one
    (:meth:`~sbom.interface.LayerCataloger.per_file`), which are then not in the result;
    without it they are kept with the others."""
    try:
        blob = started or Inflating(path, max_bytes, offset, length, spool.limits, hashing=verify)
        with blob:
            with spool.decoder(blob.memory):  # reserved before it starts, unless started early
                blob.start()
                found = _read(blob.tar, digest, list(catalogers), blob.max_bytes, spool, hand_off)
            blob.stop()  # both threads have stopped: the rest of the blob is read here
            if verify and blob.raw.digest() != digest:
                raise CorruptLayerError("the blob does not match its digest")
    except LayerError as exc:
        raise type(exc)(f"layer {digest}: {exc}") from None
    return found


_ASKED_MEMO = 1024  # extensions remembered per layer (a hostile one may hold 100,000)


def _asked(
    memo: dict[str, list[LayerCataloger]], wanting: list[LayerCataloger], ext: str
) -> list[LayerCataloger]:
    """The catalogers that may want a file of extension ``ext``."""
    found = memo.get(ext)
    if found is None:
        found = [c for c in wanting if c.extensions is None or ext in c.extensions]
        if len(memo) < _ASKED_MEMO:
            memo[ext] = found
    return found


def _read(
    stream: Stream,
    digest: str,
    wanting: list[LayerCataloger],
    max_bytes: int,
    spool: Spool,
    hand_off: HandOff | None,
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

    asked: dict[str, list[LayerCataloger]] = {}
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
        base = rel.rpartition("/")[2]
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
        who = [c for c in _asked(asked, wanting, extension(base)) if c.wants(rel)]
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
            if size > cataloger.max_size:
                continue
            if hand_off is not None and cataloger.per_file(rel):
                hand_off(cataloger, entry)  # catalogued by another thread, meanwhile
            else:
                files[cataloger.name].append(entry)
    if skipped > len(warnings):
        warnings.append(f"… and {skipped - len(warnings)} more entries skipped")
    return LayerFiles(digest, files, tuple(whiteouts), tuple(opaque), tuple(warnings))
