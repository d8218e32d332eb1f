"""Inflate a gzip layer while its blob downloads: the uncompressed tar, checked by ``diff_id``.

Half of a cold ``trivy image`` is Go's gzip inflating the layers (docs/benchmarks.md). Inflating
them before Trivy starts put that work on the critical path, serially; here each gzip layer is
inflated by a thread of its own *while* the pull downloads it: the pull hands every chunk it
hashes into the blob cache to :meth:`LayerInflater.feed` too (a bounded queue), and the thread
decompresses it with ``isal`` (twice as fast as :mod:`zlib` here: 0.26 s against 0.57 s for the
test image's 51 MB base layer), and a second thread hashes the uncompressed bytes and writes
them. ``isal``, :mod:`hashlib` and the file's ``write`` all release the GIL on large buffers, so
the two run on two cores: the test image's base layer took 0.33 s in one thread (0.165 s
inflating, 0.08 s hashing, 0.06 s writing) and 0.21 s in two, and the pull waits for it.

The copy is an optimisation only and never trusted on its own: it is kept when the uncompressed
bytes hash to the ``diff_id`` the image config states for the layer (and the blob itself
verified against its digest, which the pull checks), and abandoned, silently falling back to the
blob as pulled, when they do not, when the stream is not gzip or is corrupt, or when it inflates
past ``max_bytes`` or past ``_RATIO`` times the compressed bytes read so far (plus ``_SLACK``): a
decompression bomb stops there, having written at most that much to the work directory, and the
readers of the pulled blob keep their own limits (sbom/guard.py). A real layer rarely inflates
more than tenfold; one that does is only scanned compressed, as before this optimisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from isal import isal_zlib

from supplychain.registry.cache import check_digest

__all__ = ["LayerInflater"]

log = logging.getLogger(__name__)
_IsalError = cast("type[Exception]", isal_zlib.error)  # isal types it as an instance

_OUT = 1 << 20  # bytes inflated per call: memory stays bounded whatever the ratio
_QUEUED = 32  # chunks waiting at most (the pull's chunks are 256 KiB: 8 MiB per layer)
_PIECES = 8  # inflated pieces waiting to be hashed and written, at most (8 MiB per layer)
_GZIP = 31  # wbits: a gzip member
_RATIO = 100  # inflated bytes per compressed byte read, at most (gzip's own maximum is ~1032)
_SLACK = 64 << 20  # bytes any layer may inflate to whatever its ratio


class _Abandoned(Exception):
    """The copy cannot stand in for the blob (the reason is the message)."""


class LayerInflater:
    """Inflates one gzip layer fed chunk by chunk into ``directory/<diff_id hex>``.

    Call :meth:`feed` with the blob's bytes in order, then :meth:`result` (or :meth:`abandon`
    when the download failed); the thread never blocks the feeder for good: after a failure
    it keeps draining the queue without work.
    """

    def __init__(self, diff_id: str, directory: Path, max_bytes: int) -> None:
        self._hex = check_digest(diff_id)
        self._directory = directory
        self._max_bytes = max_bytes
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUED)
        self._failed = threading.Event()
        self._closed = False
        self._path: Path | None = None
        self._ended = False
        self.fed = 0
        """Bytes of the blob fed so far (a cache hit feeds none)."""
        self._thread = threading.Thread(target=self._run, name="inflate", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the blob (ignored once the copy was abandoned)."""
        self.fed += len(chunk)
        if chunk and not self._failed.is_set():
            self._queue.put(chunk)

    def abandon(self) -> None:
        """Stop: the blob was not fully downloaded or verified; nothing is kept."""
        self._failed.set()
        self._close()

    def result(self) -> Path | None:
        """Wait for the end; the verified uncompressed tar, or None when abandoned."""
        self._close()
        self._thread.join()
        return None if self._failed.is_set() else self._path

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def _run(self) -> None:
        name = ""
        try:
            fd, name = tempfile.mkstemp(prefix=".inflate-", dir=self._directory)
            with os.fdopen(fd, "wb") as out:
                digest = self._inflate(out)
            if self._failed.is_set():
                raise _Abandoned("the blob was not pulled")
            if digest != self._hex:
                raise _Abandoned(f"inflates to sha256:{digest}, not its diff_id")
            final = self._directory / self._hex
            os.chmod(name, 0o444)
            os.replace(name, final)
            self._path = final
        except (_Abandoned, _IsalError, OSError) as exc:
            if not self._failed.is_set():
                log.info("layer sha256:%s left compressed: %s", self._hex, exc)
            self._failed.set()
            with contextlib.suppress(OSError):
                os.unlink(name)
        except BaseException:
            self._failed.set()
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        finally:
            while not self._ended:  # drain after a failure: the feeder never blocks
                self._ended = self._queue.get() is None

    def _inflate(self, out: IO[bytes]) -> str:
        """Inflate the queued chunks (gzip members one after another) into ``out``; the hex
        SHA-256 of what was written."""
        sink = _HashingWriter(out)
        try:
            self._pieces(sink.put)
        finally:
            digest = sink.close()  # a write error is raised here, after the thread ended
        return digest

    def _pieces(self, write: Callable[[bytes], None]) -> None:
        """Inflate the queued chunks, each piece to ``write``, stopping at the limits."""
        size = consumed = 0
        member = isal_zlib.decompressobj(_GZIP)
        started = False  # the current member has had input
        while (chunk := self._queue.get()) is not None:
            if self._failed.is_set():
                continue
            data = chunk
            consumed += len(chunk)
            started = True
            while True:
                piece = member.decompress(data, _OUT)
                if piece:
                    size += len(piece)
                    if size > self._max_bytes:
                        raise _Abandoned(f"inflates past {self._max_bytes} bytes")
                    if size > _SLACK + _RATIO * consumed:
                        raise _Abandoned(f"inflates more than {_RATIO} times its size")
                    write(piece)
                if member.eof:
                    data = member.unused_data
                    member = isal_zlib.decompressobj(_GZIP)
                    started = bool(data)
                    if not data:
                        break
                    continue
                data = member.unconsumed_tail
                if not data and len(piece) < _OUT:
                    break
        self._ended = True  # the end marker is taken
        if started and not self._failed.is_set():
            raise _Abandoned("the gzip stream is truncated")


class _HashingWriter:
    """Hashes and writes the inflated pieces on a thread of its own (see the module's text).

    :meth:`put` raises the thread's write error as soon as it is seen, so the inflating stops;
    after an error the thread keeps draining, so :meth:`put` never blocks for good.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(_PIECES)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="inflate-write", daemon=True)
        self._thread.start()

    def put(self, piece: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(piece)

    def close(self) -> str:
        """Wait for the pieces put so far; the hex SHA-256 of what was written."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha.hexdigest()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._sha.update(piece)
                self._out.write(piece)
            except OSError as exc:
                self._error = exc
