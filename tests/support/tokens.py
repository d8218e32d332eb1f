"""API tokens for tests: made with the real CLI command or the real store."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from supplychain.access.tokens import ROLES, TokenStore
from supplychain.config import load_settings
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


@dataclass(frozen=True)
class Tokens:
    """One token per role (``webhook`` made for ``distribution``) in a service's database."""

    by_role: dict[str, str]
    """Role → token."""

    def headers(self, role: str) -> dict[str, str]:
        """``Authorization: Bearer`` with the token of ``role``."""
        return {"Authorization": f"Bearer {self.by_role[role]}"}

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with ``SUPPLYCHAIN_TOKEN`` set to the ci token, as a CI job holds it."""
        return {**env, "SUPPLYCHAIN_TOKEN": self.by_role["ci"]}


def issue(env: Mapping[str, str]) -> Tokens:
    """Migrate the database ``env`` names and make one token per role in it."""
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SUPPLYCHAIN_")})
    db = Database(settings.database_url)
    try:
        db.upgrade()
        store = TokenStore(db, settings.token_pepper)
        made = {
            role: store.create(
                f"test-{role}-{secrets.token_hex(3)}",
                role,
                actor="test",
                source="distribution" if role == "webhook" else None,
            )
            for role in ROLES
        }
    finally:
        db.dispose()
    return Tokens(made)
