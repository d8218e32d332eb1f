"""A content-addressed blob store: ``root/sha256/<hex>``, verified on write, LRU-evicted.

A blob is written to a temp file in the same directory while its SHA-256 is computed, and renamed
into place only when digest (and size, when known) match; a failure leaves nothing behind. Files
are made read-only: they are hard-linked into OCI layouts and must never change. A hit touches the
file's times, and eviction removes the least recently used blobs (oldest mtime) until the store
is under ``max_bytes``, sparing blobs currently pinned by a pull in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from supplychain.registry.errors import BlobTooLargeError, DigestMismatchError, RegistryError

__all__ = ["BlobCache", "check_digest"]

log = logging.getLogger(__name__)

_DIGEST_RE = re.compile(r"\Asha256:([a-f0-9]{64})\Z")
_HEX_RE = re.compile(r"\A[a-f0-9]{64}\Z")
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0


def check_digest(digest: str) -> str:
    """The hex part of ``sha256:<64 lowercase hex>``; :class:`RegistryError` otherwise."""
    match = _DIGEST_RE.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise RegistryError(
            f"invalid digest {str(digest)[:80]!r}: only sha256:<64 hex> is accepted"
        )
    return match.group(1)


class BlobCache:
    """Verified blobs under ``root/sha256/<hex>``, at most ``max_bytes`` in total (LRU)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self._dir = self.root / "sha256"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()

    def path(self, digest: str) -> Path:
        """Where ``digest`` is (or would be) stored; the digest is validated first."""
        return self._dir / check_digest(digest)

    def has(self, digest: str) -> bool:
        """True when the blob is stored; a hit counts as a use for eviction."""
        path = self.path(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def pin(self) -> Iterator[Callable[[str], None]]:
        """Inside the block, digests passed to the yielded function are spared by eviction."""
        held: list[str] = []

        def add(digest: str) -> None:
            hexdigest = check_digest(digest)
            with self._lock:
                self._pins[hexdigest] += 1
            held.append(hexdigest)

        try:
            yield add
        finally:
            with self._lock:
                self._pins.subtract(held)
                self._pins += Counter()  # drops zero counts

    def put_stream(
        self,
        digest: str,
        chunks: Iterable[bytes],
        expected_size: int | None,
        *,
        max_size: int | None = None,
    ) -> Path:
        """Store the bytes of ``chunks`` as ``digest``, verified; return the stored path.

        Raises :class:`DigestMismatchError` when the hash (or ``expected_size``) does not match and
        :class:`BlobTooLargeError` past ``max_size``; the temp file is removed in every failure.
        """
        hexdigest = check_digest(digest)
        final = self._dir / hexdigest
        if self.has(digest):
            return final
        limit = expected_size if expected_size is not None else max_size
        hasher = hashlib.sha256()
        written = 0
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self._dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    written += len(chunk)
                    if limit is not None and written > limit:
                        if expected_size is not None:
                            raise DigestMismatchError(
                                f"blob {digest} is larger than its stated size {expected_size}"
                            )
                        raise BlobTooLargeError(f"blob {digest} is over the limit of {limit} bytes")
                    hasher.update(chunk)
                    handle.write(chunk)
            if expected_size is not None and written != expected_size:
                raise DigestMismatchError(
                    f"blob {digest}: got {written} bytes, its descriptor states {expected_size}"
                )
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise DigestMismatchError(f"blob {digest}: content hashes to {actual}")
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.evict(keep=(digest,))
        return final

    def size(self) -> int:
        """Total bytes stored."""
        return sum(size for _, size, _ in self._entries())

    def evict(self, keep: Iterable[str] = ()) -> int:
        """Remove least recently used blobs until under ``max_bytes``; return bytes freed."""
        spare = {check_digest(d) for d in keep}
        with self._lock:
            spare |= {hexdigest for hexdigest, count in self._pins.items() if count > 0}
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            freed = 0
            for hexdigest, size, _ in sorted(entries, key=lambda entry: entry[2]):
                if total - freed <= self.max_bytes:
                    break
                if hexdigest in spare:
                    continue
                try:
                    (self._dir / hexdigest).unlink()
                except FileNotFoundError:
                    continue
                freed += size
                log.debug("evicted blob", extra={"digest": f"sha256:{hexdigest}", "bytes": size})
        return freed

    def _entries(self) -> list[tuple[str, int, float]]:
        """(hex, size, mtime) of stored blobs; stale temp files of crashed writers are removed."""
        entries: list[tuple[str, int, float]] = []
        now = time.time()
        with os.scandir(self._dir) as listing:
            for entry in listing:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if _HEX_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
                    entries.append((entry.name, stat.st_size, stat.st_mtime))
                elif (
                    entry.name.startswith(_TMP_PREFIX) and now - stat.st_mtime > _STALE_TMP_SECONDS
                ):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return entries
