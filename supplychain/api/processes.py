"""``serve`` with several HTTP processes: what each process builds for itself.

uvicorn starts the processes (``workers=N``) on one listening socket and imports
:func:`child_app` in each. The parent process, which only supervises them, runs the in-process
job workers; the children answer HTTP with no job worker of their own, so gate calls that wait
on a pending image are woken by the database poll (``SUPPLYCHAIN_GATE_RECHECK_SECONDS``).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

__all__ = ["CHILD_LOG_LEVEL", "CHILD_POLICY", "child_app"]

CHILD_POLICY = "SUPPLYCHAIN__SERVE_POLICY"
"""The parent's ``--policy`` for the children (not a setting: ``serve`` sets it)."""
CHILD_LOG_LEVEL = "SUPPLYCHAIN__SERVE_LOG_LEVEL"
"""The parent's ``--log-level`` for the children."""


def child_app() -> FastAPI:
    """The app of one HTTP process: settings from the environment, the parent's policy file."""
    from supplychain import logs
    from supplychain.api.app import create_app
    from supplychain.config import load_settings
    from supplychain.service import build_service

    logs.configure(os.environ.get(CHILD_LOG_LEVEL, "INFO"))
    policy = os.environ.get(CHILD_POLICY) or None
    service = build_service(load_settings(), policy_file=Path(policy) if policy else None)
    return create_app(service, workers=0)
