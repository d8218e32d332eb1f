"""``serve --processes N``: N HTTP processes share the port (uvicorn's workers, factory mode).

Each process builds its own service (database pool, group commit, in-process job workers) from
the settings in the environment; ``serve``'s command-line options reach it through the
environment too. Meant for PostgreSQL: SQLite has one writer, so more processes only queue.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

__all__ = ["app_from_environment", "serve_environment"]

_SERVE_ENV = (
    "SUPPLYCHAIN_SERVE_WORKERS",
    "SUPPLYCHAIN_SERVE_POLICY",
    "SUPPLYCHAIN_SERVE_LOG_LEVEL",
)
"""How ``serve --processes N`` hands its command-line options to each HTTP process."""


def serve_environment(workers: int, policy: Path | None, log_level: str | None) -> dict[str, str]:
    """The environment that tells :func:`app_from_environment` ``serve``'s options."""
    values = (str(workers), str(policy or ""), log_level or "")
    return dict(zip(_SERVE_ENV, values, strict=True))


def app_from_environment() -> FastAPI:
    """One HTTP process: its own service, built from the settings in the environment and the
    options :func:`serve_environment` put there."""
    from supplychain import logs
    from supplychain.api.app import create_app
    from supplychain.config import load_settings
    from supplychain.service import build_service

    workers, policy, log_level = (os.environ.get(name, "") for name in _SERVE_ENV)
    logs.configure(log_level or "INFO")
    service = build_service(load_settings(), policy_file=Path(policy) if policy else None)
    return create_app(service, workers=int(workers or 0))
