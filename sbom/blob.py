"""A layer's blob, opened and streamed: read and hashed in one thread, inflated in another
(:mod:`sbom.prefetch`), for the tar parser of :mod:`sbom.reader`.

The compression is sniffed from the first bytes (gzip via ``isal``, zstd, or a plain tar), never
from the media type a manifest claims. A decompressed-size limit stops gzip and zstd bombs, and a
zstd window is capped (and reserved from the decompressor pool before the layer starts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, cast

from isal.igzip_lib import IsalError
from isal.isal_zlib import _GzipReader

from sbom.errors import CorruptLayerError, LayerError, LayerLimitError
from sbom.inputs import LayerInput
from sbom.prefetch import Prefetch
from sbom.spool import MiB, ReadLimits

__all__ = ["GZIP_MAGIC", "ZSTD_MAGIC", "Inflating", "blob_digest", "inflate_early"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 4 << 20
"""Bytes per read of the blob, per inflating call and per inflated chunk. Big, because the
inflating thread must take the GIL back after each call, and while another thread runs Python
(the tar parser, the catalogers, the imports) each time costs it up to the 5 ms switch
interval: with 1 MiB calls the test image's base layer inflated 2-3 times slower beside a busy
thread than alone (0.5 s more for the whole command), with 4 MiB calls a third slower."""
_AHEAD = 2  # chunks queued by the reading and the inflating threads (sbom/prefetch.py)
_EARLY_AHEAD = 8
"""Inflated chunks queued for the biggest layer started before the catalogers load (the others:
2): the tar parser starts ~0.1 s later, and with 4 the inflating stopped, waiting for it. As
many chunks in all as 4 for each of two layers, plus 8 MiB."""
_ZSTD_HEADER = 18  # ZSTD_FRAMEHEADERSIZE_MAX
_ZSTD_MIN_WINDOW = 8 * MiB  # what levels up to 19 use: later frames may need as much
_GZIP_MEMORY = CHUNK + 1 * MiB  # the reader's input buffer, the inflate window and state
_IsalError = cast("type[Exception]", IsalError)  # isal types it as an instance


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
            data = self._raw.read(size if size >= 0 else CHUNK)
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
    """The blob's bytes (``length`` of them, when given), hashed as they are read unless
    ``hashing`` is false (a blob already verified against its digest: hashing the test image's
    121 MB plain base layer again cost 0.07 s of CPU beside the scanner)."""

    def __init__(self, raw: IO[bytes], length: int | None, hashing: bool = True) -> None:
        self._raw = raw
        self._left = length
        self.sha256 = hashlib.sha256() if hashing else None

    def read(self, size: int = -1) -> bytes:
        if self._left is not None:
            size = self._left if size < 0 else min(size, self._left)
        data = self._raw.read(size)
        if self._left is not None:
            self._left -= len(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def digest(self) -> str:
        """``sha256:<hex>`` of what was read, after reading the rest of the blob."""
        if self.sha256 is None:  # fail closed: never a digest of bytes not hashed
            raise LayerError("the blob was opened as verified: it was not hashed")
        while self.read(CHUNK):
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


def _open(
    path: Path, offset: int, length: int | None, hashing: bool
) -> tuple[BinaryIO, _Raw, bytes]:
    """(the file, the blob reader, the blob's first bytes) for the blob at ``path``."""
    handle = path.open("rb")
    try:
        handle.seek(offset)
        head = handle.read(_ZSTD_HEADER if length is None else min(_ZSTD_HEADER, length))
        handle.seek(offset)
    except BaseException:
        handle.close()
        raise
    return handle, _Raw(handle, length, hashing), head


def _decompressed(
    head: bytes, raw: Prefetch, max_bytes: int, limits: ReadLimits
) -> tuple[_Limited, int]:
    """(the decompressed and size-limited tar stream, the decompressor memory to reserve) of the
    blob ``raw`` streams, which starts with ``head``."""
    stream: IO[bytes]
    memory = 0
    zstd_error: type[Exception] = _NotZstd
    if head.startswith(GZIP_MAGIC):
        # isal's C reader (what its GzipFile wraps), with an input buffer of a whole chunk:
        # members, headers and CRCs checked as by GzipFile, the GIL dropped while inflating
        stream = cast(IO[bytes], _GzipReader(cast(BinaryIO, raw), CHUNK))
        memory = _GZIP_MEMORY
    elif head.startswith(ZSTD_MAGIC):
        import zstandard  # ~3 ms to import: only for a zstd layer

        window = _zstd_window(head, limits)
        zstd_error = zstandard.ZstdError
        decompressor = zstandard.ZstdDecompressor(max_window_size=window)
        stream = decompressor.stream_reader(
            cast(IO[bytes], raw), read_size=CHUNK, read_across_frames=True
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


class Inflating:
    """A layer blob, opened: once started, one thread reads and hashes it, another inflates it
    (:mod:`sbom.prefetch`), ahead of the tar parser that reads :attr:`tar` (at most ``ahead``
    inflated chunks of 4 MiB wait in memory). Leaving the ``with`` block stops both threads
    and closes the blob. ``hashing`` false: a blob already verified, not hashed again
    (``raw.digest()`` then raises)."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        offset: int,
        length: int | None,
        limits: ReadLimits,
        ahead: int = _AHEAD,
        *,
        hashing: bool = True,
    ) -> None:
        self.handle, self.raw, head = _open(path, offset, length, hashing)
        try:
            self._blob = Prefetch(partial(self.raw.read, CHUNK), _AHEAD)
            stream, memory = _decompressed(head, self._blob, max_bytes, limits)
        except BaseException:
            self.handle.close()
            raise
        self.tar = Prefetch(partial(stream.read, CHUNK), ahead)
        """The decompressed tar, read ahead."""
        self.max_bytes = max_bytes
        self.zstd = memory > _GZIP_MEMORY
        """A zstd layer: its window is reserved from the decompressor pool before it starts."""
        self.memory = memory + (_AHEAD + ahead + 2) * CHUNK
        """What it may hold: the decompressor's memory and the chunks queued."""

    def start(self) -> None:
        """Start reading and inflating (once)."""
        self._blob.start()
        self.tar.start()

    def stop(self) -> None:
        """Stop both threads and wait for them."""
        self.tar.close()
        self._blob.close()

    def close(self) -> None:
        """Stop both threads and close the blob."""
        try:
            self.stop()
        finally:
            self.handle.close()

    def __enter__(self) -> Inflating:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def inflate_early(
    layers: Sequence[LayerInput], max_bytes: int, count: int, ahead: int = _EARLY_AHEAD
) -> dict[str, Inflating]:
    """Start reading the ``count`` biggest gzip or plain blobs of ``layers`` now (``ahead``
    chunks of the biggest at most, 2 of the others), so that inflating them overlaps with
    loading the catalogers, what a command does before :func:`~sbom.generate.generate_sbom`,
    which reads from them and closes those it does not need. A zstd layer is left for later
    (its window is reserved from the decompressor pool first), and so is a blob that cannot be
    opened (reading it says why). A blob is hashed only when it is not ``verified`` yet."""
    sizes: dict[str, int] = {}
    for layer in layers:
        try:
            sizes[layer.digest] = layer.length or layer.path.stat().st_size
        except OSError:
            continue
    started: dict[str, Inflating] = {}
    for layer in sorted(layers, key=lambda item: sizes.get(item.digest, -1), reverse=True):
        if len(started) >= count or layer.digest in started or layer.digest not in sizes:
            continue
        try:
            blob = Inflating(
                layer.path,
                max_bytes,
                layer.offset,
                layer.length,
                ReadLimits(),
                _AHEAD if started else ahead,
                hashing=not layer.verified,
            )
        except (OSError, LayerError):
            continue
        if blob.zstd:
            blob.close()
            continue
        blob.start()
        started[layer.digest] = blob
    return started
