"""Where the wanted files of an image's layers are kept while the catalogers run, and the limits
that bound one SBOM's memory and disk.

Small files are kept in memory; bigger ones, or any once the image's in-memory share is spent,
go to temporary files with random names in a folder of the caller's work folder (never a name
from the image: nothing in a layer decides where we write), removed with :meth:`Spool.close`.
Every byte is charged to a per-layer and a per-image budget before it is read, and the count of
kept entries is capped, so a small hostile layer cannot make us hold gigabytes. Decompressors
reserve their memory from a shared pool: layers read in parallel wait for their share rather
than push the process past it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sbom.errors import LayerError, LayerLimitError
from sbom.interface import FileEntry

__all__ = ["ReadLimits", "Spool"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class ReadLimits:
    """How much one SBOM may read, keep and decompress. Going over one fails the SBOM with a
    :class:`~sbom.errors.LayerLimitError` that names it (an incomplete SBOM would hide packages)."""

    layer_wanted_bytes: int = 1024 * MiB
    """Bytes of wanted files (those the catalogers asked for) one layer may hold."""
    image_wanted_bytes: int = 2048 * MiB
    """Bytes of wanted files all the layers of one image may hold together."""
    image_entries: int = 80_000
    """Wanted files, whiteouts and opaque directories kept for one image."""
    image_packages: int = 100_000
    """Packages the catalogers may find in one image (each costs about 3 KiB to write out)."""
    memory_file_bytes: int = 1 * MiB
    """A wanted file up to this size is kept in memory; a bigger one goes to a temporary file."""
    memory_bytes: int = 32 * MiB
    """Wanted-file bytes kept in memory for one image; past this every file goes to disk."""
    zstd_window_bytes: int = 128 * MiB
    """The largest zstd window accepted (zstd's own default limit: ``--long`` and level 22)."""
    decoder_bytes: int = 160 * MiB
    """Decompressor memory of the layers read at once; a layer waits until its share is free."""


class Spool:
    """The wanted files of one image, under :class:`ReadLimits`, in a new folder made in ``work``
    (the system's temporary directory when None)."""

    def __init__(self, work: Path | None, limits: ReadLimits) -> None:
        self.limits = limits
        self.folder = Path(tempfile.mkdtemp(prefix="sbom-files-", dir=work))
        self._lock = threading.Condition()
        self._wanted = 0
        self._entries = 0
        self._memory = 0
        self._decoders = 0
        self._failed = threading.Event()

    def close(self) -> None:
        """Delete every temporary file (entries on disk can no longer be read)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def fail(self) -> None:
        """Tell the other layers' readers to stop: the SBOM failed."""
        self._failed.set()

    def check(self) -> None:
        """Raise :class:`Stopped` once another layer failed."""
        if self._failed.is_set():
            raise Stopped("stopped reading: another layer failed")

    @contextmanager
    def decoder(self, size: int) -> Iterator[None]:
        """Hold ``size`` bytes of the decompressor pool (waiting while other layers hold it)."""
        with self._lock:
            while self._decoders and self._decoders + size > self.limits.decoder_bytes:
                self._lock.wait(1.0)
                self.check()
            self._decoders += size
        try:
            yield
        finally:
            with self._lock:
                self._decoders -= size
                self._lock.notify_all()

    def layer(self) -> LayerSpool:
        """The spool of one layer."""
        return LayerSpool(self)

    def _charge(self, layer: LayerSpool, size: int, entries: int) -> bool:
        """Charge a kept entry of ``size`` bytes; True when it may be kept in memory."""
        limits = self.limits
        with self._lock:
            if self._entries + entries > limits.image_entries:
                raise LayerLimitError(
                    f"the image holds more than {limits.image_entries} wanted files and whiteouts"
                )
            if layer.wanted + size > limits.layer_wanted_bytes:
                raise LayerLimitError(
                    "the files the catalogers read exceed the per-layer budget of"
                    f" {limits.layer_wanted_bytes} bytes"
                )
            if self._wanted + size > limits.image_wanted_bytes:
                raise LayerLimitError(
                    "the files the catalogers read exceed the per-image budget of"
                    f" {limits.image_wanted_bytes} bytes"
                )
            self._entries += entries
            self._wanted += size
            layer.wanted += size
            in_memory = (
                size <= limits.memory_file_bytes and self._memory + size <= limits.memory_bytes
            )
            if in_memory:
                self._memory += size
            return in_memory


class Stopped(LayerError):
    """Another layer of the image failed first: this one stopped reading."""


class LayerSpool:
    """Keeps the wanted files of one layer (not thread-safe: one reader per layer)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.wanted = 0

    def count(self) -> None:
        """Charge one kept entry that holds no data (a whiteout, a hard link)."""
        self.spool._charge(self, 0, 1)

    def store(
        self, path: str, mode: int, size: int, copy: Callable[[Callable[[bytes], object]], None]
    ) -> FileEntry:
        """A file of ``size`` bytes whose data ``copy`` passes to the function it is given."""
        if self.spool._charge(self, size, 1):
            parts: list[bytes] = []
            copy(parts.append)
            return FileEntry(path, b"".join(parts), mode)
        fd, name = tempfile.mkstemp(dir=self.spool.folder)
        with os.fdopen(fd, "wb") as handle:
            copy(handle.write)
        return FileEntry(path, Path(name), mode)
