"""Group commit: many callers' rows written in one transaction, each caller waiting for it.

The gate records every answer (a verdict row and an audit row) before it is sent. One commit per
answer costs a write lock and a sync each; under load the callers queue on the lock. Here each
caller hands its write to one writer thread and waits; the writer takes everything queued,
runs it in one ``Database.session(write=True)`` and commits once, then releases every caller of
that batch. No waiting window is added: while one batch commits, the next one gathers.

Callers hand over rows to insert (a Core ``executemany`` per table, no ORM unit of work). A
caller returns only after its rows are committed, so no answer is sent unrecorded. When the
commit fails, every caller of the batch gets the exception (the gate then answers an error,
never a decision): a failed batch is not retried, its callers retry if they wish.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert

from supplychain.evidence.database import Database
from supplychain.evidence.models import Base
from supplychain.evidence.tlog import LOGGED, touch

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

Row = tuple[type[Base], dict[str, Any]]
"""A model and the column values of one row to insert."""

MAX_BATCH = 256
"""Writes committed together at most."""


@dataclass(frozen=True)
class _Pending:
    """One caller's write and the future it waits on."""

    rows: Sequence[Row]
    """The caller's rows."""
    done: Future[None]
    """Set when the batch is committed (or with the exception that stopped it)."""


class GroupCommit:
    """One writer thread committing the writes queued by many callers, batch by batch."""

    def __init__(self, db: Database, *, timeout: float = 30.0) -> None:
        self.db = db
        self.timeout = timeout
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        """Batches committed (for tests and the benchmark)."""

    def write(self, rows: Sequence[Row]) -> None:
        """Insert ``rows`` in the next batch's transaction; return once it is committed."""
        pending = _Pending(rows, Future())
        self._ensure_thread()
        self._queue.put(pending)
        pending.done.result(timeout=self.timeout)

    def close(self) -> None:
        """Stop the writer once the writes queued so far are committed."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        tables: dict[type[Base], list[dict[str, Any]]] = {}
        for pending in batch:
            for model, values in pending.rows:
                tables.setdefault(model, []).append(values)
        try:
            with self.db.session(write=True) as session:
                for model, rows in tables.items():  # one executemany per table
                    table = model.__table__
                    assert isinstance(table, Table)  # noqa: S101 - declarative models have one
                    if table.name not in LOGGED:
                        session.execute(insert(table), rows)
                        continue
                    # the tamper-evident log sees no Core insert: hand it the new rows as
                    # stored (RETURNING every column), so it need not read them again
                    (key,) = table.primary_key.columns
                    inserted = session.execute(insert(table).returning(*table.c), rows)
                    for row in inserted.mappings():
                        touch(session, table.name, row[key.name], row)
        except BaseException as exc:  # every caller of the batch learns it was not recorded
            log.warning("group commit of %d writes failed: %s", len(batch), type(exc).__name__)
            for pending in batch:
                pending.done.set_exception(exc)
            return
        self.batches += 1
        for pending in batch:
            pending.done.set_result(None)
