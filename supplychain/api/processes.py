"""``serve`` with several HTTP processes: what each process builds for itself.

uvicorn starts the processes (``workers=N``) on one listening socket and imports
:func:`child_app` in each. The parent process, which only supervises them, runs the in-process
job workers; the children answer HTTP with no job worker of their own, so gate calls that wait
on a pending image are woken by the database poll (``SUPPLYCHAIN_GATE_RECHECK_SECONDS``).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from fastapi import FastAPI

__all__ = ["CHILD_LOG_LEVEL", "CHILD_POLICY", "child_app", "freeze_startup"]

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
    app = create_app(service, workers=0)
    freeze_startup()
    return app


def freeze_startup() -> None:
    """Move every object alive once a serving process is built (modules, the app, its
    service) out of the garbage collector's generations, as a long-running server should: each
    full collection walked them all, ~90 ms of the interpreter lock on a 2-core machine, during
    which every request in flight waited (the webhook intake's p99)."""
    gc.collect()
    gc.freeze()
