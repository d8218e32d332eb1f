"""Tag moves: which digest a tag named, from when until when.

A tag row points at a digest from ``seen_at`` until ``superseded_at`` (null: it still does). A
move to a new digest supersedes the tag's current row and adds one; a move to the digest it
already names changes nothing. :class:`TagMoves` does it in two steps, so that the webhook
intake can send other statements of its batch with each (one round trip on PostgreSQL:
:func:`~supplychain.evidence.driver.pipeline`); :func:`record_tags` does both at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select
from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.evidence.bulk import send_insert, send_update
from supplychain.evidence.dbutil import audit_many, table_of
from supplychain.evidence.driver import Later, Stored, fetch_all, send
from supplychain.evidence.models import utcnow
from supplychain.evidence.tlog import touch
from supplychain.interface import ImageTarget

__all__ = ["Move", "TagMoves", "record_tags"]

Move = tuple[ImageTarget, str, str]
"""A tag move: (target, tag, source)."""
Entry = tuple[str, str, str | None, dict[str, Any]]
"""An audit entry: (actor, action, subject, details)."""
Name = tuple[str, str, str]
"""A tag by (host, repository, tag)."""


class TagMoves:
    """Tag moves in two steps: the tags' current rows, read and locked when it is made, then
    :meth:`write`; :meth:`rows` gives the rows written, for the tamper-evident log."""

    def __init__(self, conn: Connection, names: Iterable[Name]) -> None:
        self.conn = conn
        self._current = _current(conn, sorted(set(names)))
        self._written: list[Later[Stored]] = []
        self._reread: list[int] = []

    def write(self, moves: Sequence[Move], entries: list[Entry]) -> None:
        """Apply ``moves`` in order (each tag among the names given at the start), adding their
        ``tag.moved`` audit entries to ``entries``."""
        current: dict[Name, list[tuple[int | None, str]]] = {}
        for row in self._current.rows():
            current.setdefault((row[1], row[2], row[3]), []).append((row[0], row[4]))
        now = utcnow()
        superseded: list[int] = []
        added: list[dict[str, Any]] = []
        for target, tag, source in moves:
            name = (target.registry, target.repository, tag)
            pointing = current.get(name, [])
            if any(digest == target.digest for _, digest in pointing):
                continue
            for row_id, _ in pointing:
                if row_id is None:  # added earlier in this call: stored already superseded
                    added[_last(added, name)]["superseded_at"] = now
                else:
                    superseded.append(row_id)
            added.append(
                {
                    "host": target.registry,
                    "repository": target.repository,
                    "tag": tag,
                    "digest": target.digest,
                    "source": source,
                    "seen_at": now,
                    "superseded_at": None,
                }
            )
            current[name] = [(None, target.digest)]
            subject = f"{target.registry}/{target.repository}:{tag}"
            entries.append((source, "tag.moved", subject, {"digest": target.digest}))
        table = table_of(models.TagEvent)
        if superseded:
            changes = [{"id": row_id, "superseded_at": now} for row_id in superseded]
            self._written.append(send_update(self.conn, table, "id", changes, returning=True))
            if self.conn.dialect.name != "postgresql":  # SQLite's UPDATE returns nothing
                self._reread += superseded
        self._written.append(send_insert(self.conn, table, added, returning=list(table.c)))

    def rows(self) -> list[tuple[int, Stored | None]]:
        """Every tag row written, by key: as the database returned it, or None for one the log
        must read again."""
        written = [(int(row["id"]), row) for later in self._written for row in later.rows()]
        return written + [(row_id, None) for row_id in self._reread]


def record_tags(
    session: Session, moves: Sequence[Move], audit_entries: list[Entry] | None = None
) -> None:
    """Point each tag at its target's digest, in order, keeping the history of moves: one
    locking read, one UPDATE of the rows superseded and one INSERT of the new rows; their audit
    entries written too (or, given ``audit_entries``, added to it for the caller to write)."""
    if not moves:
        return
    tags = TagMoves(session.connection(), (_name(move) for move in moves))
    entries: list[Entry] = [] if audit_entries is None else audit_entries
    tags.write(moves, entries)
    for key, row in tags.rows():
        touch(session, "tags", key, row)
    if audit_entries is None:
        audit_many(session, entries)


def _name(move: Move) -> Name:
    target, tag, _ = move
    return (target.registry, target.repository, tag)


def _current(conn: Connection, names: list[Name]) -> Later[Any]:
    """The current rows (id, host, repository, tag, digest) of the tags ``names``, locked; each
    tag found through the index on (host, repository, tag) whatever the planner's statistics
    say (a row-value ``IN`` was a scan of every tag row on both databases)."""
    if not names:
        return Later.done([])
    if conn.dialect.name == "postgresql":  # one statement text whatever the count
        return send(conn, _PG_CURRENT, {"names": json.dumps(names)}, fetch_all)
    table = models.TagEvent
    named = [
        and_(table.host == host, table.repository == repository, table.tag == tag)
        for host, repository, tag in names
    ]
    query = select(table.id, table.host, table.repository, table.tag, table.digest).where(
        or_(*named), table.superseded_at.is_(None)
    )
    return Later.done(list(conn.execute(query).all()))


_PG_CURRENT = """SELECT t.id, t.host, t.repository, t.tag, t.digest
FROM jsonb_array_elements(CAST(%(names)s AS JSONB)) AS u(v)
CROSS JOIN LATERAL (
    SELECT tags.id, tags.host, tags.repository, tags.tag, tags.digest FROM tags
    WHERE tags.host = u.v ->> 0 AND tags.repository = u.v ->> 1 AND tags.tag = u.v ->> 2
        AND tags.superseded_at IS NULL
    FOR UPDATE
) AS t"""
"""PostgreSQL: the named tags' current rows, one index look-up per name (a lateral join)."""


def _last(added: list[dict[str, Any]], name: Name) -> int:
    """Index of the last row added for the tag ``name``."""
    for index in range(len(added) - 1, -1, -1):
        row = added[index]
        if (row["host"], row["repository"], row["tag"]) == name:
            return index
    raise LookupError(name)
