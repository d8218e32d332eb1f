"""``POST /v1/admission/validate`` and ``/v1/admission/mutate``: Kubernetes admission webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from supplychain.admission.controller import Admission
from supplychain.admission.review import AdmissionError
from supplychain.service import Service

__all__ = ["MAX_REVIEW_BODY", "admission_router"]

MAX_REVIEW_BODY = 8 * 1024 * 1024
"""An AdmissionReview holds the object and the old object (etcd keeps objects up to 1.5 MiB)."""


def admission_router(service: Service) -> APIRouter:
    """The admission routes on ``service``'s gate and settings."""
    router = APIRouter()
    admission = Admission(
        service.gate,
        mode=service.settings.admission_mode,
        wait=service.settings.admission_wait_seconds,
    )

    async def answer(request: Request, *, mutate: bool) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REVIEW_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            review = await run_in_threadpool(admission.review, bytes(body), mutate=mutate)
        except AdmissionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(review)

    @router.post("/v1/admission/validate")
    async def validate(request: Request) -> JSONResponse:
        return await answer(request, mutate=False)

    @router.post("/v1/admission/mutate")
    async def mutate(request: Request) -> JSONResponse:
        return await answer(request, mutate=True)

    return router
