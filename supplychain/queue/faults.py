"""Faults that are not the image's: the registry, the disk or the database, not its content.

A job ended by one of these is deferred (retried later without spending an attempt), and the
process notes the fault so ``/readyz`` can say why it is not ready.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator

import requests
from sqlalchemy.exc import DBAPIError

from supplychain.interface import ScanError
from supplychain.registry.errors import RegistryUnavailableError

__all__ = ["FAULTS", "FaultBoard", "fault_of", "short"]

_UNREACHABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
DISK = "disk"
DATABASE = "database"
REGISTRY = "registry"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def short(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, bounded (database messages can run to pages)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]


def fault_of(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, reason)`` when ``exc`` is a registry, disk or database fault, else None."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return DISK, f"disk full: {cause.strerror} ({cause.filename or 'data dir'})"
        if isinstance(cause, ScanError) and "no space left on device" in str(cause).lower():
            return DISK, f"disk full: {short(cause)}"
        if isinstance(cause, DBAPIError):
            return DATABASE, f"database unavailable: {short(cause.orig or cause)}"
        if isinstance(cause, RegistryUnavailableError):
            return REGISTRY, f"registry unavailable: {cause}"
        if isinstance(cause, _UNREACHABLE):
            return REGISTRY, f"registry unavailable: {type(cause).__name__}"
    return None


class FaultBoard:
    """The faults this process saw lately, by kind, for ``/readyz``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, str]] = {}

    def note(self, kind: str, reason: str) -> None:
        """Record that ``kind`` failed just now."""
        with self._lock:
            self._seen[kind] = (time.monotonic(), reason)

    def clear(self, kind: str) -> None:
        """``kind`` worked again."""
        with self._lock:
            self._seen.pop(kind, None)

    def recent(self, seconds: float = 60.0) -> dict[str, str]:
        """Faults noted in the last ``seconds`` and not cleared since."""
        now = time.monotonic()
        with self._lock:
            return {k: r for k, (at, r) in self._seen.items() if now - at <= seconds}


FAULTS = FaultBoard()
"""This process's board."""
