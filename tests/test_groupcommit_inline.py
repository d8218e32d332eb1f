"""The group commit written on the event loop (SQLite): the gate's answers share a transaction on
the loop itself, and whenever that could wait or fail the items go to the committer thread, which
waits its turn and isolates a failing item. Nothing is lost either way, and the tamper-evident
log still verifies."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text

from supplychain.evidence.database import Database, WriterBusy
from supplychain.evidence.groupcommit import GroupCommit, Row, insert_facts
from supplychain.evidence.models import AuditEntry
from supplychain.evidence.tlogcheck import verify

Recorder = GroupCommit[Connection, Sequence[Row], None]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'inline.db'}")
    database.upgrade()
    yield database
    database.dispose()


def entry(subject: str) -> Sequence[Row]:
    return [(AuditEntry, {"actor": "test", "action": "inline.item", "subject": subject})]


def recorded(db: Database) -> list[str]:
    with db.session() as session:
        query = select(AuditEntry.subject).where(AuditEntry.action == "inline.item")
        return sorted(str(subject) for subject in session.scalars(query))


class Threads:
    """The batch function, noting which thread wrote each batch."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, connection: Connection, writes: list[Sequence[Row]]) -> list[None]:
        self.names.append(threading.current_thread().name)
        for rows in writes:
            for _, values in rows:
                if values["subject"] == "bad":
                    raise ValueError("a bad item")
        return insert_facts(connection, writes)


def recorder(db: Database, run: Threads) -> Recorder:
    return GroupCommit(db.writing, run, name="committer", inline=db.writing_now)


async def submit_all(group: Recorder, subjects: Sequence[str]) -> list[BaseException | None]:
    return await asyncio.gather(
        *(group.submit(entry(subject)) for subject in subjects), return_exceptions=True
    )


def test_items_of_one_loop_turn_share_one_transaction_on_the_loop(db: Database) -> None:
    assert db.writes_now
    run = Threads()
    group = recorder(db, run)
    try:
        outcome = asyncio.run(submit_all(group, [f"item-{n}" for n in range(20)]))
    finally:
        group.close()
    assert outcome == [None] * 20
    assert recorded(db) == sorted(f"item-{n}" for n in range(20))
    assert run.names == ["MainThread"]  # one batch, written by the loop's thread
    assert verify(db, None).problems == ()


def test_a_writer_holding_the_turn_sends_the_items_to_the_committer(db: Database) -> None:
    run = Threads()
    group = recorder(db, run)
    released = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with db.writing():
            holding.set()
            time.sleep(0.3)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        refused_at_once(db)
        outcome = asyncio.run(submit_all(group, ["a", "b"]))
        assert released.is_set()  # answered only once written, after the other writer
    finally:
        holder.join()
        group.close()
    assert outcome == [None, None]
    assert recorded(db) == ["a", "b"]
    assert run.names == ["committer-0"]


def test_sqlite_s_own_lock_held_outside_the_turns_does_not_stall_the_loop(
    db: Database, tmp_path: Path
) -> None:
    run = Threads()
    group = recorder(db, run)
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a writer that does not take the turn

    def release() -> None:
        time.sleep(0.3)
        other.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        refused_at_once(db)  # SQLite's 30 s busy wait is not used here
        outcome = asyncio.run(submit_all(group, ["c"]))
    finally:
        releaser.join()
        other.close()
        group.close()
    assert outcome == [None]
    assert recorded(db) == ["c"]
    assert run.names == ["committer-0"]
    with db.engine.connect() as connection:  # the pooled connection waits as before
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == 30000


def test_a_failing_item_fails_alone_and_the_others_are_written(db: Database) -> None:
    run = Threads()
    group = recorder(db, run)
    try:
        outcome = asyncio.run(submit_all(group, ["a", "bad", "c"]))
    finally:
        group.close()
    assert outcome[0] is None and outcome[2] is None
    assert isinstance(outcome[1], ValueError)
    assert recorded(db) == ["a", "c"]
    # the loop's batch failed and was rolled back; the committer retried it, then each alone
    assert run.names[0] == "MainThread"
    assert set(run.names[1:]) == {"committer-0"}
    assert verify(db, None).problems == ()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 2


def test_writes_that_never_wait_are_for_an_sqlite_file(pg_url: str) -> None:
    database = Database(pg_url)
    assert not database.writes_now
    try:
        with pytest.raises(WriterBusy, match="SQLite file"):
            with database.writing_now():
                pass
    finally:
        database.dispose()


def refused_at_once(db: Database) -> None:
    """A write that must not wait raises WriterBusy at once, not after a wait."""
    started = time.monotonic()
    with pytest.raises(WriterBusy):
        with db.writing_now():
            pass
    assert time.monotonic() - started < 0.1
