"""The tamper-evident log: every fact row written is appended as a leaf, in the fact's transaction.

A leaf's data is the canonical serialisation of one fact row (:func:`leaf_data`): the leaf's own
index, the table, the primary key and the row's columns as canonical JSON (sorted keys, no
spaces; times in UTC ISO 8601; binary columns by their SHA-256), plus the count and SHA-256 of
its child rows (a scan's findings, components, signatures and attestations; an index's entries).
Binding the index names a reordered leaf; re-reading the row from the database when appending
makes ``supplychain audit verify`` recompute the very same bytes.

Appends need no call at the write sites: a session hook sees every ORM insert, update and delete
of a logged table (or of a child row) at flush, and appends the rows' leaves just before the
commit, under a lock (PostgreSQL: a transaction advisory lock; SQLite: the write lock the fact's
own insert already holds), so leaf indexes are unique, gap-free and in commit order. Each fact
costs one leaf-hash insert: the tree itself is computed only at checkpoint and verify time.
Writes that bypass the ORM in a session (Core ``insert_ignore``, bulk ``update``) call
:func:`touch`; a Core write transaction with no session (the gate's answers,
:meth:`~supplychain.evidence.database.Database.writing`) calls :func:`append` before it commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, event, select
from sqlalchemy.orm import Session, sessionmaker

from supplychain.evidence import models
from supplychain.evidence.bulk import send_insert
from supplychain.evidence.driver import Later, fetch_all, send
from supplychain.evidence.merkle import leaf_hash

__all__ = [
    "LOGGED",
    "Logged",
    "append",
    "append_sent",
    "backfill",
    "install",
    "leaf_data",
    "rows_of",
    "touch",
]

PENDING = "supplychain_tlog_pending"
LOCK_KEY = 0x7375_7070_6C79  # "supply": the PostgreSQL advisory lock serialising appends


@dataclass(frozen=True)
class Logged:
    """How one table's rows become leaves."""

    table: str
    """The table's name."""
    exclude: frozenset[str] = frozenset()
    """Bookkeeping columns left out (they change without a new fact)."""
    children: tuple[tuple[str, str], ...] = field(default=())
    """``(child table, its column naming this row)``: rows hashed into this row's leaf."""
    hidden: frozenset[str] = frozenset()
    """Columns serialised by their SHA-256 only (so an exported proof does not show them)."""


LOGGED: dict[str, Logged] = {
    spec.table: spec
    for spec in (
        Logged("audit_log"),
        Logged("webhook_deliveries"),
        Logged("images", children=(("index_entries", "index_id"),)),
        Logged("tags"),
        Logged(
            "scans",
            exclude=frozenset({"matched_at"}),
            children=(
                ("findings", "scan_id"),
                ("components", "scan_id"),
                ("signatures", "scan_id"),
                ("attestations", "scan_id"),
            ),
        ),
        Logged("verdicts"),
        Logged("verdict_changes", exclude=frozenset({"announced_at", "announce_error"})),
        Logged("vex_statements"),
        Logged("waivers"),
        Logged("api_tokens", exclude=frozenset({"last_used_at"}), hidden=frozenset({"token_hash"})),
    )
}
"""The fact tables: deliveries, images and tags, scans with what they found and verified,
verdicts and gate answers, verdict changes, VEX, waivers, tokens, and the audit log itself."""

PARENT: dict[str, tuple[str, str]] = {
    child: (spec.table, column) for spec in LOGGED.values() for child, column in spec.children
}


def _table(name: str) -> Table:
    table = models.Base.metadata.tables[name]
    assert isinstance(table, Table)  # noqa: S101 - metadata holds Tables
    return table


def _pk(table: Table) -> Column[Any]:
    return next(iter(table.primary_key.columns))


def _key_value(table: Table, key: str) -> object:
    return int(key) if _pk(table).type.python_type is int else key


def _value(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes | memoryview):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    return value


def canonical(document: object) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _row(spec: Logged | None, row: Any) -> dict[str, object]:
    # Nulls are left out, so a nullable column added later leaves the old rows' leaves as they were.
    exclude = spec.exclude if spec else frozenset()
    hidden = spec.hidden if spec else frozenset()
    return {
        k: _value(v.encode() if k in hidden and isinstance(v, str) else v)
        for k, v in row.items()
        if k not in exclude and v is not None
    }


Present = dict[str, set[str]] | None
"""The columns each table has in the database (a migration's view); None: all the models'."""


def _select(table: Table, present: Present) -> Any:
    if present is None:
        return select(table)
    return select(*(c for c in table.c if c.name in present[table.name]))


def rows_of(
    conn: Connection, name: str, *, batch: int = 500, present: Present = None
) -> Iterator[tuple[str, Any]]:
    """Every row of table ``name`` as ``(key, mapping)``, by primary key, streamed."""
    table = _table(name)
    query = _select(table, present).order_by(_pk(table)).execution_options(yield_per=batch)
    for row in conn.execute(query).mappings():
        yield str(row[_pk(table).name]), row


def leaf_data(
    conn: Connection, index: int, name: str, key: str, row: Any = None, present: Present = None
) -> bytes:
    """The canonical bytes of leaf ``index`` for row ``key`` of ``name`` as the DB holds it now.

    ``row`` is the row when the caller read it already; a missing row serialises as null (a
    deletion recorded in the log).
    """
    return _with_index(_document(conn, name, key, row, present), index)


def _with_index(document: dict[str, object], index: int) -> bytes:
    return canonical({**document, "index": index})


def _document(
    conn: Connection, name: str, key: str, row: Any = None, present: Present = None
) -> dict[str, object]:
    """Leaf ``key`` of ``name`` as the DB holds it now, all but its index."""
    spec, table = LOGGED[name], _table(name)
    if row is None:
        query = _select(table, present).where(_pk(table) == _key_value(table, key))
        row = conn.execute(query).mappings().first()
    document: dict[str, object] = {"table": name, "key": key, "row": None}
    if row is not None:
        document["row"] = _row(spec, row)
        children: dict[str, object] = {}
        for child, column in spec.children:
            ctable = _table(child)
            digest, count = hashlib.sha256(), 0
            query = _select(ctable, present).where(ctable.c[column] == _key_value(table, key))
            for crow in conn.execute(query.order_by(_pk(ctable))).mappings():
                digest.update(canonical(_row(None, crow)) + b"\n")
                count += 1
            children[child] = {"rows": count, "sha256": digest.hexdigest()}
        if children:
            document["children"] = children
    return document


def touch(session: Session, name: str, key: object, row: Any = None) -> None:
    """Log row ``key`` of table ``name`` (again) when ``session`` commits.

    ``row``: the whole row as the database just returned it (``INSERT … RETURNING`` every
    column), read instead of re-reading it at commit; a later touch without one clears it.
    """
    if name in LOGGED:
        session.info.setdefault(PENDING, {})[(name, str(key))] = row


def _note(session: Session, instance: object) -> None:
    table = getattr(instance, "__table__", None)
    if not isinstance(table, Table):
        return
    if table.name in LOGGED:
        touch(session, table.name, getattr(instance, _pk(table).key))
    elif table.name in PARENT:
        parent, column = PARENT[table.name]
        value = getattr(instance, column, None)
        if value is not None:
            touch(session, parent, value)


def _changed(instance: object) -> bool:
    from sqlalchemy import inspect

    state = inspect(instance)
    table = getattr(instance, "__table__", None)
    exclude = (
        LOGGED[table.name].exclude if isinstance(table, Table) and table.name in LOGGED else ()
    )
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in exclude)


def _after_flush(session: Session, _context: object) -> None:
    for instance in session.new:
        _note(session, instance)
    for instance in session.deleted:
        _note(session, instance)
    for instance in session.dirty:
        if _changed(instance):
            _note(session, instance)


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.flush()
    pending = session.info.pop(PENDING, None)
    if pending:
        known = {key: row for key, row in pending.items() if row is not None}
        append(session.connection(), list(pending), known=known)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def _documents(
    conn: Connection,
    keys: list[tuple[str, str]],
    present: Present,
    known: dict[tuple[str, str], Any] | None = None,
) -> list[dict[str, object]]:
    """The leaf documents of ``keys``, in order: one query per table (and per parent's children)
    for the rows not in ``known``."""
    rows: dict[tuple[str, str], Any] = dict(known or {})
    for name in {name for name, key in keys if (name, key) not in rows}:
        table, pk = _table(name), _pk(_table(name))
        wanted = [_key_value(table, key) for n, key in keys if n == name and (n, key) not in rows]
        for start in range(0, len(wanted), 500):
            query = _select(table, present).where(pk.in_(wanted[start : start + 500]))
            for row in conn.execute(query).mappings():
                rows[(name, str(row[pk.name]))] = row
    return [
        _document(conn, name, key, rows[(name, key)], present)
        if (name, key) in rows
        else {"table": name, "key": key, "row": None}
        for name, key in keys
    ]


def append(
    conn: Connection,
    keys: Iterable[tuple[str, str]],
    present: Present = None,
    *,
    known: dict[tuple[str, str], Any] | None = None,
) -> int:
    """Append leaves for ``keys`` (table, primary key) at the log's end; the first new index.

    The rows are read before the lock is taken (but those in ``known``, already read in this
    transaction); under it only the index is added and hashed.
    """
    documents = _documents(conn, list(keys), present, known)
    start = int(_lock_and_end(conn).rows()[0][0])
    _leaves(conn, documents, start)
    return start


def append_sent(
    conn: Connection,
    sent: Sequence[tuple[str, Later[Any]]],
    written: Sequence[tuple[str, str, Any]] = (),
) -> None:
    """:func:`append` for a batch in a :func:`~supplychain.evidence.driver.pipeline`: the rows
    ``written`` (table, key, the row as returned or None to read it again: SQLite only) and
    those the INSERTs ``sent`` (table, returning every column) will return. The log's lock and
    end are asked for with those INSERTs, in one round trip; the leaves are only sent. No table
    here may have child rows (they would be read inside the pipeline)."""
    if any(LOGGED[name].children for name, _ in sent):
        raise ValueError("rows with child rows are appended with append()")
    end = _lock_and_end(conn)
    start = int(end.rows()[0][0])
    keys = [(name, key) for name, key, _ in written]
    known = {(name, key): row for name, key, row in written if row is not None}
    for name, later in sent:
        key_name = _pk(_table(name)).name
        for row in later.rows():
            keys.append((name, str(row[key_name])))
            known[keys[-1]] = row
    _leaves(conn, _documents(conn, keys, None, known), start)


def _lock_and_end(conn: Connection) -> Later[Any]:
    """Take the log's lock (PostgreSQL; on SQLite the transaction already wrote its facts, so it
    holds the database's write lock) and ask for the next leaf index: sent, read when needed
    (on the driver's cursor: SQLAlchemy's execution costs more than this read)."""
    if conn.dialect.name == "postgresql":
        send(conn, _LOCK, (LOCK_KEY,))
    return send(conn, _END, None, fetch_all)


def _leaves(conn: Connection, documents: list[dict[str, object]], start: int) -> None:
    """Insert the leaves of ``documents``, the first at index ``start``."""
    rows = [
        {
            "idx": start + offset,
            "table_name": document["table"],
            "row_key": document["key"],
            "leaf_hash": leaf_hash(_with_index(document, start + offset)).hex(),
        }
        for offset, document in enumerate(documents)
    ]
    send_insert(conn, _table("log_leaves"), rows)


_LOCK = "SELECT pg_advisory_xact_lock(%s)"
"""The log's lock (PostgreSQL), for this transaction: appenders take their turn."""
_END = "SELECT coalesce(max(idx) + 1, 0) FROM log_leaves"
"""The next leaf index (the same SQL on SQLite and PostgreSQL)."""


def backfill(conn: Connection) -> int:
    """Append a leaf for every fact row already stored (the log's genesis); how many.

    Run by a migration: it reads only the columns the database has at that revision.
    """
    from sqlalchemy import inspect

    inspector = inspect(conn)
    names = set(LOGGED) | set(PARENT)
    present = {n: {c["name"] for c in inspector.get_columns(n)} for n in names}
    count = 0
    for name in LOGGED:
        keys = [key for key, _ in rows_of(conn, name, present=present)]
        for start in range(0, len(keys), 1000):
            chunk = [(name, key) for key in keys[start : start + 1000]]
            append(conn, chunk, present)
        count += len(keys)
    return count


def install(factory: sessionmaker[Session]) -> None:
    """Make sessions of ``factory`` append the leaves of what they write."""
    event.listen(factory, "after_flush", _after_flush)
    event.listen(factory, "before_commit", _before_commit)
    event.listen(factory, "after_rollback", _after_rollback)
