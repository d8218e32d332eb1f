"""Tag moves look their tags up through the (host, repository, tag) index on both databases:
every push of a tag reads its current row, so a scan of the whole tags table would make each
webhook batch slower as the history grows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, insert, text

from supplychain.evidence.bulk import _pg_update, insert_rows, send_update
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import table_of
from supplychain.evidence.models import TagEvent, utcnow
from supplychain.evidence.tags import _PG_CURRENT, TagMoves

NAMES = [("registry.example:5000", "team/app", f"v{n}") for n in range(16)]


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        yield request.getfixturevalue("db")  # emptied
        return
    db = Database(f"sqlite:///{tmp_path / 'tags.db'}")
    db.upgrade()
    yield db
    db.dispose()


def test_current_tags_are_found_through_the_index(database: Database) -> None:
    rows = [
        {
            "host": "registry.example:5000",
            "repository": f"team/app{n % 50}",
            "tag": f"v{n}",
            "digest": f"sha256:{n:064x}",
            "source": "test",
            "seen_at": utcnow(),
        }
        for n in range(5000)
    ]
    with database.engine.begin() as conn:
        conn.execute(insert(TagEvent), rows)
        conn.execute(text("ANALYZE"))
        if database.is_postgres:
            names = json.dumps(NAMES)
            plan = conn.exec_driver_sql(f"EXPLAIN {_PG_CURRENT}", {"names": names}).all()
            steps = "\n".join(str(row[0]) for row in plan)
            assert "Index Scan using ix_tags_host_repository_tag" in steps
            assert "Seq Scan on tags" not in steps
        else:
            statements: list[str] = []

            def seen(*args: object) -> None:
                statements.append(str(args[2]))

            event.listen(conn, "before_cursor_execute", seen)
            TagMoves(conn, NAMES)
            event.remove(conn, "before_cursor_execute", seen)
            (query,) = statements
            params = [part for name in NAMES for part in name]
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", tuple(params)).all()
            steps = "\n".join(str(row[3]) for row in plan)
            assert "USING INDEX ix_tags_host_repository_tag" in steps
            assert "SCAN tags" not in steps


def test_superseded_tags_are_updated_through_the_key_index(db: Database) -> None:
    """The UPDATE of superseded tag rows (PostgreSQL: the rows as JSON, their keys as an array)
    finds them through the primary key, not by scanning every tag row."""
    rows = [
        {
            "host": "registry.example:5000",
            "repository": "team/app",
            "tag": f"v{n}",
            "digest": f"sha256:{n:064x}",
            "source": "test",
            "seen_at": utcnow(),
        }
        for n in range(5000)
    ]
    table = table_of(TagEvent)
    with db.engine.begin() as conn:
        conn.execute(insert(TagEvent), rows)
        conn.execute(text("ANALYZE tags"))
        update = _pg_update(table, "id", ("id", "superseded_at"), True, conn.dialect)
        changes = [[key, "2026-11-30T00:00:00+00:00"] for key in range(100, 4900, 300)]
        params = {"rows": json.dumps(changes), "keys": [key for key, _ in changes]}
        plan = conn.exec_driver_sql(f"EXPLAIN {update.sql}", params).all()
        steps = "\n".join(str(row[0]) for row in plan)
        assert "Index Scan using pk_tags" in steps
        assert "Seq Scan on tags" not in steps


def test_the_update_of_superseded_tags_is_planned_for_each_call(db: Database) -> None:
    """PostgreSQL keeps a generic plan for a statement psycopg prepared (after five runs), made
    for the table as it was then: made while the tags were few, it scanned them all ever after.
    The UPDATE is never prepared, so each call is planned for the table as it is."""
    table = table_of(TagEvent)
    row = {
        "host": "registry.example:5000",
        "repository": "team/app",
        "tag": "v1",
        "digest": "sha256:" + "0" * 64,
        "source": "test",
        "seen_at": utcnow(),
    }
    with db.engine.begin() as conn:
        for number in range(10):  # the INSERT is prepared, as psycopg does after five runs
            (stored,) = insert_rows(
                conn, table, [{**row, "tag": f"v{number}"}], returning=[table.c.id]
            )
            send_update(conn, table, "id", [{"id": stored["id"], "superseded_at": utcnow()}]).rows()
        prepared = [
            str(statement).split(" ", 2)[:2]
            for (statement,) in conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
        ]
        assert ["INSERT", "INTO"] in prepared
        assert ["UPDATE", "tags"] not in prepared
