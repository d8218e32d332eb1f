"""Group commit: many callers' writes share one transaction, each answered after it commits.

A caller hands its item of work to :meth:`GroupCommit.submit` (from the event loop) or
:meth:`GroupCommit.call` (from a worker thread) and waits. A committer thread takes every item
waiting, hands them all to the batch function (which writes them with as few statements as it
can: one multi-row statement per table) in one write transaction, commits once, then settles
each caller: the writes are durable before the caller is answered, and N callers cost one
commit (one fsync/WAL flush) instead of N. At low load a unit runs alone with no added wait;
under load the units that arrive while a commit is in flight form the next batch (optionally
waiting up to ``window`` seconds for more, and no longer once the batch is as large as the
largest of the recent ones: at low load a lone unit is not held).

If a batch fails, it is rolled back and every item is run again in its own transaction, so an
item that fails (a constraint, a bug) fails alone and the others still commit. The batch
function must therefore have no side effects outside the session.

With ``inline`` (an SQLite file: no round trips), items submitted from an event loop are written
on the loop itself: the first item of a loop turn schedules a flush after the turn, so the items
submitted in between share it. A thread hand-off each way (the committer woken, the loop woken
back) cost more CPU and latency than the write on this kind of machine. ``inline`` begins a
transaction that never waits: when another writer has the database, or the batch fails, the
items go to the committer thread as before (which waits its turn and isolates a failing item).

Used by the webhook intake (deliveries and their jobs) and the gate (its answers). Written here
rather than taken from a library: SQLAlchemy and the drivers offer no group commit, and
PostgreSQL's ``commit_delay`` groups WAL flushes across sessions but still pays one round-trip
transaction per request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from supplychain.evidence.bulk import send_insert
from supplychain.evidence.dbutil import table_of
from supplychain.evidence.driver import Later, pipeline
from supplychain.evidence.models import Base
from supplychain.evidence.tlog import LOGGED, append_sent

__all__ = ["BatchClosed", "GroupCommit", "Row", "insert_facts"]

HandleT = TypeVar("HandleT")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
log = logging.getLogger(__name__)

Row = tuple[type[Base], dict[str, Any]]
"""A model and the column values of one row to insert."""


RECENT = 32
"""How many of the last batches' sizes decide when to stop waiting for more."""


class BatchClosed(RuntimeError):
    """Work was submitted after :meth:`GroupCommit.close`."""


@dataclass
class _Unit(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT] | Future[ResultT]
    loop: asyncio.AbstractEventLoop | None
    """The caller's event loop; None for a thread waiting on a concurrent future."""


class GroupCommit(Generic[HandleT, ItemT, ResultT]):
    """Writes submitted items with ``run(handle, items) -> results`` (one result per item, in
    order) in shared write transactions, each opened by ``begin()``: a context manager giving
    the transaction's handle (a write session, or a Core connection for statements built once)
    and committing it when it exits without an error."""

    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[HandleT]],
        run: Callable[[HandleT, list[ItemT]], list[ResultT]],
        *,
        window: float = 0.0,
        max_batch: int = 256,
        committers: int = 1,
        name: str = "group-commit",
        inline: Callable[[], AbstractContextManager[HandleT]] | None = None,
    ) -> None:
        self.begin = begin
        self.inline = inline
        self.run = run
        self.window = window
        self.max_batch = max_batch
        self.batches = 0
        """Transactions committed so far (for tests and metrics)."""
        self.units = 0
        """Units committed so far."""
        self._queue: queue.SimpleQueue[list[_Unit[ItemT, ResultT]] | None] = queue.SimpleQueue()
        """Units to commit, handed over in groups (an event loop's turn's units together)."""
        self._pending: dict[asyncio.AbstractEventLoop, list[_Unit[ItemT, ResultT]]] = {}
        self._closed = False
        self._sizes: deque[int] = deque(maxlen=RECENT)
        """The sizes of the last batches taken: the wait for more ends once a batch is as large
        as the largest of them."""
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{index}", daemon=True)
            for index in range(max(1, committers))
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, item: ItemT) -> ResultT:
        """Write ``item`` in a shared transaction; its result once that has committed."""
        if self._closed:
            raise BatchClosed("the group commit is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        unit = _Unit(item, future, loop)
        if loop in self._pending:
            self._pending[loop].append(unit)
        else:
            self._pending[loop] = [unit]
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the units this loop submitted since the last flush to the committer together
        (one wake-up of its thread, not one per unit), or with ``inline`` write them on the
        loop."""
        units = self._pending.pop(loop, [])
        if not units:
            return
        if self.inline is None:
            self._hand_over(units)
            return
        try:
            results = self._commit(units, self.inline)
        except Exception:  # another writer has the database, or the batch failed
            self._hand_over(units)  # the committer waits its turn, isolates a failure
            return
        self.batches += 1
        self.units += len(units)
        for unit, result in zip(units, results, strict=True):
            _settle(unit.future, result, None)

    def _hand_over(self, units: list[_Unit[ItemT, ResultT]]) -> None:
        if self._closed:  # no committer thread may be left to take them
            for unit in units:
                _settle(unit.future, None, BatchClosed("the group commit is closed"))
        else:
            self._queue.put(units)

    def call(self, item: ItemT, timeout: float | None = 30.0) -> ResultT:
        """:meth:`submit` for a caller in a thread: blocks until the item's batch committed
        (or raises what stopped it, or :class:`TimeoutError` after ``timeout`` s)."""
        if self._closed:
            raise BatchClosed("the group commit is closed")
        future: Future[ResultT] = Future()
        self._queue.put([_Unit(item, future, None)])
        return future.result(timeout=timeout)

    def close(self) -> None:
        """Finish the queued work, then stop the committer threads."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _take(self) -> list[_Unit[ItemT, ResultT]] | None:
        first = self._queue.get()
        if first is None:
            return None
        units = list(first)
        deadline = time.monotonic() + self.window
        # as large as the largest recent batch: its callers are likely all back. The largest, not
        # the last: callers split over two batches would otherwise stay split, each half
        # paying a whole commit, where waiting merges them again
        enough = max(self._sizes, default=self.max_batch)
        while len(units) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                more = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0 and len(units) < enough
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if more is None:
                self._queue.put(None)  # keep the stop signal for this thread's next turn
                break
            units += more  # a loop's turn's units stay together: max_batch is a soft bound
        self._sizes.append(len(units))
        return units

    def _loop(self) -> None:
        while (units := self._take()) is not None:
            try:
                results = self._commit(units)
            except Exception:  # one transaction failed: isolate the unit that broke it
                log.warning("group commit of %d units failed; retrying each alone", len(units))
                for unit in units:
                    self._run_alone(unit)
                continue
            self.batches += 1
            self.units += len(units)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for unit, result in zip(units, results, strict=True):
                if unit.loop is None:
                    _settle(unit.future, result, None)
                else:
                    by_loop.setdefault(unit.loop, []).append((unit.future, result))  # type: ignore[arg-type]
            for loop, settled in by_loop.items():  # one wake-up of each loop per batch
                loop.call_soon_threadsafe(_settle_all, settled)

    def _commit(
        self,
        units: list[_Unit[ItemT, ResultT]],
        begin: Callable[[], AbstractContextManager[HandleT]] | None = None,
    ) -> list[ResultT]:
        with (begin or self.begin)() as handle:
            results = self.run(handle, [unit.item for unit in units])
            if len(results) != len(units):  # before the commit: rolled back
                raise RuntimeError("the batch function returned a result count unlike its items")
        return results

    def _run_alone(self, unit: _Unit[ItemT, ResultT]) -> None:
        try:
            result = self._commit([unit])[0]
        except Exception as exc:  # the unit's own failure, reported to its caller
            _deliver(unit, None, exc)
            return
        self.batches += 1
        self.units += 1
        _deliver(unit, result, None)


def _deliver(unit: _Unit[Any, Any], result: Any, error: BaseException | None) -> None:
    if unit.loop is None:
        _settle(unit.future, result, error)
    else:
        unit.loop.call_soon_threadsafe(_settle, unit.future, result, error)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in settled:
        _settle(future, result, None)


def _settle(
    future: asyncio.Future[Any] | Future[Any], result: Any, error: BaseException | None
) -> None:
    if future.done():  # the caller was cancelled (client gone); its writes stand
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def insert_facts(connection: Connection, writes: list[Sequence[Row]]) -> list[None]:
    """A batch function (in :meth:`Database.writing`) inserting each caller's rows: one
    statement per table for the whole batch; the new rows of logged tables (none with child
    rows) are appended to the tamper-evident log as the database returned them. On PostgreSQL
    the INSERTs travel with the log's lock and end, in one round trip
    (:func:`~supplychain.evidence.tlog.append_sent`)."""
    tables: dict[type[Base], list[dict[str, Any]]] = {}
    for rows in writes:
        for model, values in rows:
            tables.setdefault(model, []).append(values)
    with pipeline(connection):
        sent: list[tuple[str, Later[Any]]] = []
        for model, values_list in tables.items():
            table = table_of(model)
            if table.name not in LOGGED:
                send_insert(connection, table, values_list)
                continue
            sent.append(
                (table.name, send_insert(connection, table, values_list, returning=list(table.c)))
            )
        if sent:
            append_sent(connection, sent)
    return [None] * len(writes)
