"""The HTTP API: webhook intake, the gate, audit queries, health and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select, text

from supplychain import __version__
from supplychain.api.accesslog import AccessLog
from supplychain.decide.gate import GateError
from supplychain.evidence import models
from supplychain.metrics import WEBHOOKS
from supplychain.service import Service
from supplychain.stages.scanner import missing_db_advice

__all__ = ["create_app"]

MAX_HOOK_BODY = 1024 * 1024
log = logging.getLogger("supplychain.api")


class GateRequest(BaseModel):
    """Body of ``POST /v1/gate``."""

    image: str = Field(max_length=1024, description="host/repo:tag or host/repo@sha256:…")
    wait: float | None = Field(
        default=None,
        ge=0,
        le=600,
        description="seconds to wait while pending (default: SUPPLYCHAIN_GATE_WAIT_SECONDS)",
    )
    platform: str | None = Field(default=None, max_length=64, description="os/arch to decide on")


def create_app(service: Service, *, workers: int = 0) -> FastAPI:
    """The ASGI app; ``workers`` in-process workers run while it is up."""
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        threads = [
            threading.Thread(
                target=service.worker().run, args=(stop,), daemon=True, name=f"worker-{i}"
            )
            for i in range(workers)
        ]
        for thread in threads:
            thread.start()
        yield
        if threads:
            log.info("workers stopping", extra={"workers": len(threads)})
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    app = FastAPI(title="supplychain", version=__version__, lifespan=lifespan)
    app.add_middleware(AccessLog)

    @app.post("/v1/hooks/{source}", status_code=202)
    async def hook(source: str, request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_HOOK_BODY:
                WEBHOOKS.labels(source=source[:32], status="413").inc()
                return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        remote = request.client.host if request.client else None
        result = await run_in_threadpool(
            service.intake.receive, source, headers, bytes(body), remote
        )
        WEBHOOKS.labels(
            source=source[:32] if result.status != 404 else "unknown", status=str(result.status)
        ).inc()
        content: dict[str, Any] = {"message": result.message}
        if result.delivery_id is not None:
            content.update(
                delivery=result.delivery_id,
                accepted=result.accepted,
                duplicates=result.duplicates,
                refused=list(result.refused),
            )
        return JSONResponse(content, status_code=result.status)

    @app.post("/v1/gate")
    async def gate(request: GateRequest) -> JSONResponse:
        try:
            wait = service.settings.gate_wait_seconds if request.wait is None else request.wait
            answer = await run_in_threadpool(
                service.gate.decide, request.image, wait=wait, platform=request.platform
            )
        except GateError as exc:
            return JSONResponse({"decision": "error", "error": str(exc)}, status_code=exc.status)
        return JSONResponse(answer.to_json())

    @app.get("/v1/verdicts")
    def verdicts(
        digest: str | None = Query(default=None, max_length=71),
        context: str | None = Query(default=None, max_length=16),
        limit: int = Query(default=50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
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
    def job(job_id: int) -> dict[str, Any]:
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
        after: int = Query(default=0, ge=0), limit: int = Query(default=100, ge=1, le=1000)
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
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = []
        try:
            with service.db.session() as session:
                session.execute(text("SELECT 1"))
            if service.db.current_revision() is None:
                problems.append("database not migrated: run `supplychain db upgrade`")
        except Exception as exc:
            problems.append(f"database unreachable: {type(exc).__name__}")
        if not service.trivy.has_db():
            advice = missing_db_advice(service.settings.trivy_offline)
            problems.append(f"no Trivy vulnerability DB: {advice}")
        status = 503 if problems else 200
        return JSONResponse(
            {"status": "not ready" if problems else "ready", "problems": problems},
            status_code=status,
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
