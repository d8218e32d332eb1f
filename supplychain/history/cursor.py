"""Opaque, tamper-proof page cursors: a keyset position, bound to its query, signed.

A cursor is ``base64url(json) "." base64url(HMAC-SHA-256[:16])``. The JSON holds the position
after the last row of a page (time, kind, id) and a digest of the query it belongs to (route and
filters), so a cursor edited by hand, or replayed against other filters, is refused
(:class:`CursorError`, a 400) instead of silently skipping or repeating rows.

The key is derived from ``SUPPLYCHAIN_TOKEN_PEPPER`` when it is set (cursors then survive a
restart and work across replicas), else drawn at random when the service starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Cursor", "CursorError", "CursorSigner", "Position"]

MAX_CURSOR = 512
"""Longest cursor accepted (a real one is about 150 characters)."""
_CONTEXT = b"supplychain history cursor v1"


class CursorError(ValueError):
    """A cursor that is malformed, signed with another key, or made for another query."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a page ends: rows sort by (at, kind, id), ascending."""

    at: datetime
    """The row's time (timezone-aware UTC)."""
    kind: str
    """The row's kind (rows of several tables share one order)."""
    id: int
    """The row's id in its table."""


@dataclass(frozen=True)
class Cursor:
    """A decoded cursor."""

    position: Position
    """The last row already returned."""
    query: str
    """Digest of the route and filters the cursor was made for."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not base64url") from None


def query_digest(route: str, filters: dict[str, object]) -> str:
    """The digest binding a cursor to ``route`` and its ``filters`` (cursor and limit left out)."""
    canonical = json.dumps([route, filters], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class CursorSigner:
    """Makes and checks cursors with one key."""

    def __init__(self, secret: str | None) -> None:
        material = secret.encode() if secret else os.urandom(32)
        self._key = hmac.new(material, _CONTEXT, hashlib.sha256).digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def make(self, position: Position, query: str) -> str:
        """The cursor for the page after ``position`` of ``query``."""
        body = json.dumps(
            {"t": position.at.isoformat(), "k": position.kind, "i": position.id, "q": query},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def read(self, cursor: str, query: str) -> Position:
        """The position in ``cursor``; :class:`CursorError` unless it is ours and for ``query``."""
        if len(cursor) > MAX_CURSOR or cursor.count(".") != 1:
            raise CursorError("malformed cursor")
        body_text, mac_text = cursor.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
        if not hmac.compare_digest(mac, self._mac(body)):
            raise CursorError("cursor was altered or made by another server")
        try:
            data = json.loads(body)
            position = Position(datetime.fromisoformat(data["t"]), str(data["k"]), int(data["i"]))
            made_for = str(data["q"])
        except (ValueError, KeyError, TypeError):
            raise CursorError("malformed cursor") from None
        if position.at.tzinfo is None:
            raise CursorError("malformed cursor")
        if not hmac.compare_digest(made_for, query):
            raise CursorError("cursor belongs to another query (route or filters changed)")
        return position
