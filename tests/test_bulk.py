"""Rows written as column arrays (PostgreSQL) or executemany (SQLite): the same rows stored, in
order, with the columns' defaults, conflicts skipped, and rows returned exactly as a later read
gives them (the tamper-evident log hashes the returned rows, its verifier re-reads them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from supplychain.evidence.bulk import insert_rows, send_update
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import table_of
from supplychain.evidence.driver import reserve_ids
from supplychain.evidence.models import AuditEntry, SeenEvent, WebhookDelivery, utcnow
from supplychain.evidence.tlog import leaf_data


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        db = request.getfixturevalue("db")  # emptied
        yield db
    else:
        db = Database(f"sqlite:///{tmp_path / 'bulk.db'}")
        db.upgrade()
        yield db
        db.dispose()


def delivery(number: int) -> dict[str, object]:
    return {
        "source": "distribution",
        "authenticated": True,
        "content_type": None,
        "remote_addr": "127.0.0.1",
        "body": f"body {number}".encode(),
        "outcome": "pending",
        "detail": None,
        "events": 1,
        "jobs_created": 0,
        "received_at": utcnow(),
    }


def test_rows_come_back_in_order_with_defaults_as_a_read_gives_them(database: Database) -> None:
    audit = table_of(AuditEntry)
    entries = [
        {"actor": "a", "action": "x", "subject": f"s{n}", "details": {"n": n, "none": None}}
        for n in range(40)
    ]
    with database.engine.begin() as conn:
        stored = insert_rows(conn, audit, entries, returning=list(audit.c))
        assert [row["subject"] for row in stored] == [f"s{n}" for n in range(40)]
        assert [row["id"] for row in stored] == sorted(row["id"] for row in stored)
        assert all(row["at"] is not None and row["at"].tzinfo is not None for row in stored)
        read = {row["id"]: row for row in conn.execute(select(audit)).mappings()}
        for row in stored:
            assert dict(row) == dict(read[row["id"]])
            key = str(row["id"])
            assert leaf_data(conn, 0, "audit_log", key, row) == leaf_data(conn, 0, "audit_log", key)


def test_conflicts_are_skipped_and_only_new_rows_returned(database: Database) -> None:
    deliveries, seen = table_of(WebhookDelivery), table_of(SeenEvent)
    with database.engine.begin() as conn:
        (stored,) = insert_rows(conn, deliveries, [delivery(1)], returning=[deliveries.c.id])
        first = [{"key": k, "delivery_id": stored["id"]} for k in ("k1", "k2")]
        again = [{"key": k, "delivery_id": stored["id"]} for k in ("k2", "k3")]
        new = insert_rows(conn, seen, first, skip_conflicts=True, returning=[seen.c.key])
        newer = insert_rows(conn, seen, again, skip_conflicts=True, returning=[seen.c.key])
        assert [row["key"] for row in new] == ["k1", "k2"]
        assert [row["key"] for row in newer] == ["k3"]
        keys = conn.execute(select(seen.c.key).order_by(seen.c.key)).scalars().all()
        assert keys == ["k1", "k2", "k3"]


def test_updates_set_each_row_its_own_values(database: Database) -> None:
    deliveries = table_of(WebhookDelivery)
    with database.engine.begin() as conn:
        ids = [
            row["id"]
            for row in insert_rows(
                conn, deliveries, [delivery(n) for n in range(5)], returning=[deliveries.c.id]
            )
        ]
        changes = [
            {"id": i, "outcome": "accepted", "detail": f"d{i}", "jobs_created": i} for i in ids
        ]
        returned = send_update(conn, deliveries, "id", changes, returning=True).rows()
        read = conn.execute(
            select(deliveries.c.id, deliveries.c.outcome, deliveries.c.detail).order_by("id")
        ).all()
        assert [tuple(r) for r in read] == [(i, "accepted", f"d{i}") for i in ids]
        if database.is_postgres:  # SQLite's executemany returns nothing
            assert sorted(r["jobs_created"] for r in returned) == sorted(ids)


def test_rows_naming_different_columns_are_refused(database: Database) -> None:
    audit = table_of(AuditEntry)
    rows = [{"actor": "a", "action": "x"}, {"actor": "a", "action": "x", "subject": "s"}]
    with database.engine.begin() as conn, pytest.raises(ValueError, match="same columns"):
        insert_rows(conn, audit, rows)


def test_reserved_keys_are_new_increasing_and_never_drawn_again(database: Database) -> None:
    deliveries = table_of(WebhookDelivery)
    with database.engine.begin() as conn:
        (first,) = insert_rows(conn, deliveries, [delivery(0)], returning=[deliveries.c.id])
        reserved = reserve_ids(conn, deliveries, 5)
        assert reserved == sorted(set(reserved)) and reserved[0] > first["id"]
        rows = [{**delivery(n), "id": key} for n, key in enumerate(reserved)]
        insert_rows(conn, deliveries, rows)
        (after,) = insert_rows(conn, deliveries, [delivery(9)], returning=[deliveries.c.id])
        assert after["id"] > reserved[-1]
        ids = conn.execute(select(deliveries.c.id).order_by(deliveries.c.id)).scalars().all()
        assert ids == [first["id"], *reserved, after["id"]]
