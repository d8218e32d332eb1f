"""Tag moves look their tags up through the (host, repository, tag) index on both databases:
every push of a tag reads its current row, so a scan of the whole tags table would make each
webhook batch slower as the history grows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, insert, text

from supplychain.evidence.database import Database
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
