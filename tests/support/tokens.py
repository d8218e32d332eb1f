"""API tokens for tests: made with the real CLI command or the real store."""

from __future__ import annotations

from collections.abc import Mapping

from supplychain.access.tokens import TokenStore
from supplychain.evidence.database import Database
from tests.support.service import run_cli


def cli_token(env: Mapping[str, str], role: str, name: str, *extra: str) -> str:
    """``supplychain tokens create`` (before or while the server runs): the printed token."""
    made = run_cli(["tokens", "create", "--role", role, "--name", name, *extra], env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def with_ci_token(env: Mapping[str, str], name: str = "ci-test") -> dict[str, str]:
    """``env`` plus ``SUPPLYCHAIN_TOKEN``: a new ci token, as a CI job would hold it."""
    return {**env, "SUPPLYCHAIN_TOKEN": cli_token(env, "ci", name)}


def bearer(db: Database, role: str, name: str, source: str | None = None) -> dict[str, str]:
    """An ``Authorization`` header holding a new token of ``role`` (pepper-less store)."""
    token = TokenStore(db, None).create(name, role, actor="test", source=source)
    return {"Authorization": f"Bearer {token}"}
