"""The HTTP API: webhook intake, the gate, audit queries, health and metrics.

Every request body has a size limit enforced while it is read (413, never more than the limit
buffered: :mod:`supplychain.api.bodylimit`). Ids in paths and queries are bounded to their column
types. Gate calls wait on a notification (:mod:`supplychain.api.waits`), not in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import select, text

from registry_hooks.grammar import GrammarError, check_text, valid_digest
from supplychain import __version__
from supplychain.access.oidc import oidc_verifier
from supplychain.access.rules import authorizer
from supplychain.api.accesslog import AccessLog
from supplychain.api.admission import admission_router
from supplychain.api.bodylimit import BodyLimit
from supplychain.api.errors import GATE_PATH, install_error_handlers
from supplychain.api.history import history_router
from supplychain.api.leangate import LeanGate
from supplychain.api.leanhooks import HOOKS_PATH, Hooks, LeanHooks
from supplychain.api.openapi import OPENAPI_PATH, describe
from supplychain.api.routemetrics import RouteMetrics
from supplychain.api.schemas import GateRequest
from supplychain.api.tokens import tokens_router
from supplychain.api.waits import Waits
from supplychain.api.waivers import waivers_router
from supplychain.evidence import models
from supplychain.intake.webhooks import HOOKS_ROUTE
from supplychain.intake.webhooks import MAX_BODY as MAX_HOOK_BODY
from supplychain.queue.faults import DISK, FAULTS, short
from supplychain.queue.pool import WorkerPool
from supplychain.reconcile import ReconcileTimer
from supplychain.service import Service
from supplychain.stages.scanner import missing_db_advice

__all__ = ["MAX_API_BODY", "create_app"]

MAX_API_BODY = 64 * 1024
"""Body limit of every route but the webhooks (whose limit is the intake's)."""
MAX_JOB_ID = 2**31 - 1
"""Job ids are 32-bit integers."""
MAX_AUDIT_ID = 2**63 - 1
"""Audit ids are 64-bit integers."""


def body_limit(path: str) -> int:
    """The body limit of a request to ``path``."""
    return MAX_HOOK_BODY if path.startswith(HOOKS_PATH) else MAX_API_BODY


def reconcile_timer(service: Service) -> ReconcileTimer | None:
    """Started: ``serve``'s reconcile passes, when ``SUPPLYCHAIN_RECONCILE_SECONDS`` is set."""
    interval = service.settings.reconcile_seconds
    if interval <= 0:
        return None
    timer = ReconcileTimer(service.reconciler(), interval)
    timer.start()
    return timer


class Readiness(BaseModel):
    """Answer of ``/readyz``: 200 ready, 503 with the problems to fix."""

    status: str
    problems: list[str]


def create_app(service: Service, *, workers: int = 0, lean: bool = True) -> FastAPI:
    """The ASGI app; ``workers`` in-process workers run while it is up. ``lean=False``: every
    call goes to the FastAPI routes (the lean handlers of the gate and the webhooks give the
    same answers, with less CPU: ``supplychain_http_lean_answers_total`` counts them)."""
    settings = service.settings
    waits = Waits(
        service.db,
        recheck_seconds=settings.gate_recheck_seconds,
        max_waiters=settings.gate_max_waiters,
        decide_on_loop={"yes": True, "no": False}.get(settings.gate_decide_on_loop),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        poller = asyncio.create_task(waits.run(), name="gate-waits")
        pool = WorkerPool(lambda: service.worker(on_job_done=waits.kick), workers)
        pool.start()
        timer = reconcile_timer(service)
        yield
        if timer is not None:
            await run_in_threadpool(timer.stop)
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await poller
        await run_in_threadpool(pool.shutdown, settings.shutdown_grace_seconds)
        await run_in_threadpool(service.intake.close)
        await run_in_threadpool(waits.close)

    authorize = authorizer(service.tokens, settings.metrics_role, oidc_verifier(settings))
    app = FastAPI(
        title="supplychain",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
        openapi_url=None,  # served below as a route under the access rules
        # metrics are Prometheus'; FastAPI's OpenTelemetry hooks would look up providers (and
        # the environment) on every request, a measurable share of a gate call
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    async def answer_gate(request: GateRequest) -> dict[str, Any]:
        wait = settings.gate_wait_seconds if request.wait is None else request.wait
        answer = await waits.answer(service.gate, request.image, wait, request.platform)
        return answer.to_json()

    hooks = Hooks(service.intake)
    if lean:
        app.add_middleware(LeanGate, authorize=authorize, answer=answer_gate)  # innermost
        app.add_middleware(LeanHooks, authorize=authorize, hooks=hooks)
    app.add_middleware(AccessLog)
    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(RouteMetrics)
    install_error_handlers(app)
    app.include_router(admission_router(service))
    app.include_router(tokens_router(service.tokens))
    app.include_router(waivers_router(service))
    app.include_router(history_router(service))
    described: list[dict[str, Any]] = []

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi() -> JSONResponse:
        """This API's OpenAPI description (checked in as docs/openapi.json)."""
        if not described:
            described.append(describe(app, settings.metrics_role))
        return JSONResponse(described[0])

    @app.post(HOOKS_ROUTE, status_code=202)
    async def hook(source: str, request: Request) -> JSONResponse:
        # described here; every call is answered by LeanHooks (the same answer)
        return await hooks.respond(source, request)

    @app.post(GATE_PATH)
    async def gate(request: GateRequest) -> JSONResponse:
        # described and validated here; a well-formed call is answered by LeanGate (same parts)
        return JSONResponse(await answer_gate(request))

    @app.get("/v1/verdicts")
    def verdicts(
        digest: str | None = Query(default=None, max_length=71),
        context: str | None = Query(default=None, max_length=16),
        limit: int = Query(default=50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        if digest is not None and not valid_digest(digest):
            raise HTTPException(400, "digest must be sha256:<64 lowercase hex>")
        if context is not None:
            try:
                check_text(context, "context", 16)
            except GrammarError as exc:
                raise HTTPException(400, str(exc)) from None
        with service.db.session() as session:
            query = select(models.Verdict).order_by(models.Verdict.id.desc()).limit(limit)
            if digest:
                query = query.where(models.Verdict.digest == digest)
            if context:
                query = query.where(models.Verdict.context == context)
            return [
                {
                    "id": v.id,
                    "context": v.context,
                    "requested": v.requested,
                    "digest": v.digest,
                    "decision": v.decision,
                    "reasons": v.reasons,
                    "policy": {"name": v.policy, "digest": v.policy_digest},
                    "scan": v.scan_id,
                    "evaluated_at": v.evaluated_at.isoformat(),
                }
                for v in session.scalars(query)
            ]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: int = Path(ge=1, le=MAX_JOB_ID)) -> dict[str, Any]:
        with service.db.session() as session:
            row = session.get(models.Job, job_id)
            if row is None:
                raise HTTPException(404, "no such job")
            return {
                "id": row.id,
                "kind": row.kind,
                "image": f"{row.host}/{row.repository}@{row.digest}",
                "state": row.state,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "failures": [
                    {"attempt": f.attempt, "reason": f.reason, "at": f.at.isoformat()}
                    for f in row.failures
                ],
            }

    @app.get("/v1/audit")
    def audit_log(
        after: int = Query(default=0, ge=0, le=MAX_AUDIT_ID),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        with service.db.session() as session:
            rows = session.scalars(
                select(models.AuditEntry)
                .where(models.AuditEntry.id > after)
                .order_by(models.AuditEntry.id)
                .limit(limit)
            )
            return [
                {
                    "id": r.id,
                    "at": r.at.isoformat(),
                    "actor": r.actor,
                    "action": r.action,
                    "subject": r.subject,
                    "details": r.details,
                }
                for r in rows
            ]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={200: {"model": Readiness}, 503: {"model": Readiness}})
    def readyz() -> JSONResponse:
        problems = []
        try:
            with service.db.session() as session:
                session.execute(text("SELECT 1"))
            if service.db.current_revision() is None:
                problems.append("database not migrated: run `supplychain db upgrade`")
        except Exception as exc:
            problems.append(f"database unreachable: {short(getattr(exc, 'orig', None) or exc)}")
        problems += _disk_problems(service)
        if not service.trivy.has_db():
            advice = missing_db_advice(service.settings.trivy_offline)
            problems.append(f"no Trivy vulnerability DB: {advice}")
        status = 503 if problems else 200
        return JSONResponse(
            {"status": "not ready" if problems else "ready", "problems": problems},
            status_code=status,
        )

    @app.get(
        "/metrics", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
    )
    async def metrics() -> Response:  # cheap and in-memory: never queued behind gate calls
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _disk_problems(service: Service) -> list[str]:
    """Too little free space in the data dir, or a job that hit ENOSPC in the last minute."""
    problems = []
    data_dir = service.settings.data_dir
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        return [f"data dir unusable: SUPPLYCHAIN_DATA_DIR {data_dir}: {exc.strerror}"]
    if free < service.settings.min_free_bytes:
        problems.append(
            f"disk full: {free // 1024**2} MiB free in SUPPLYCHAIN_DATA_DIR "
            f"(SUPPLYCHAIN_MIN_FREE_BYTES is {service.settings.min_free_bytes // 1024**2} MiB)"
        )
    recent = FAULTS.recent().get(DISK)
    if recent:
        problems.append(f"{recent} (in the last minute)")
    return problems
