"""Tests for tests/support/proxy.py, the TCP proxy the fault tests cut between the service and
PostgreSQL: taking it down must end the connections through it as a stopped server does."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.conftest import PG_SERVER
from tests.support.proxy import TcpProxy


def _through(proxy: TcpProxy) -> str:
    host_port = PG_SERVER.rsplit("@", 1)[1]
    return PG_SERVER.replace(host_port, proxy.address) + "/test"


def test_down_ends_a_connection_waiting_for_an_answer() -> None:
    """A query in flight when the proxy goes down fails at once: without the shutdown in
    ``_reset`` the client waited forever (its socket was never really closed), which hung a
    worker in the suite."""
    host, port = PG_SERVER.rsplit("@", 1)[1].rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        connection = psycopg.connect(_through(proxy), autocommit=True)
        outcome: list[BaseException | None] = []

        def query() -> None:
            try:
                connection.execute("SELECT pg_sleep(30)")
                outcome.append(None)
            except BaseException as exc:  # what the client sees
                outcome.append(exc)

        waiting = threading.Thread(target=query, daemon=True)
        waiting.start()
        time.sleep(0.5)  # the query is at the server
        started = time.monotonic()
        proxy.down()
        waiting.join(10)
        assert not waiting.is_alive(), "the client still waits on a connection nobody serves"
        assert time.monotonic() - started < 10
        assert isinstance(outcome[0], psycopg.OperationalError)
        connection.close()


def test_up_again_accepts_new_connections() -> None:
    host, port = PG_SERVER.rsplit("@", 1)[1].rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        proxy.down()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(_through(proxy), connect_timeout=5)
        proxy.up()
        with psycopg.connect(_through(proxy), connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
