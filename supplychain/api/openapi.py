"""The API's OpenAPI description, complete: every answer a route can give is in it.

FastAPI describes each route's success answer and a 422 in its own shape; our error handlers
answer every failure as :class:`~supplychain.api.history.ErrorAnswer`
(:mod:`supplychain.api.errors`). :func:`describe` replaces those 422s, adds 401 and 403 to every
route that needs a token (:mod:`supplychain.access.rules`), 413 to every route reading a body,
503 (database unavailable, failing closed) to every route, and the statuses in
:data:`STATUSES` to the routes that answer them. ``docs/openapi.json`` is this description
(``tests/test_openapi.py`` keeps it current; ``scripts/openapi.py`` writes it).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from supplychain.access.rules import BY_SOURCE, OPEN, rule_of
from supplychain.api.schemas import ErrorAnswer

__all__ = ["OPENAPI_PATH", "STATUSES", "describe", "render"]

OPENAPI_PATH = "/v1/openapi.json"

STATUSES: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/v1/hooks/{source}"): {
        400: "malformed delivery (stored with the reason)",
        404: "no webhook adapter of that name",
    },
    ("POST", "/v1/gate"): {
        400: "bad image reference",
        403: "registry not in SUPPLYCHAIN_REGISTRIES",
        429: "too many callers waiting",
        502: "the registry could not resolve the tag",
    },
    ("POST", "/v1/admission/validate"): {400: "not an AdmissionReview"},
    ("POST", "/v1/admission/mutate"): {400: "not an AdmissionReview"},
    ("POST", "/v1/tokens"): {400: "bad name, role or expiry"},
    ("DELETE", "/v1/tokens/{name}"): {404: "no such live token"},
    ("POST", "/v1/waivers"): {400: "incomplete or invalid waiver"},
    ("DELETE", "/v1/waivers/{waiver_id}"): {404: "no such live waiver"},
    ("GET", "/v1/verdicts"): {400: "bad digest or context"},
    ("GET", "/v1/jobs/{job_id}"): {404: "no such job"},
}
"""Error answers particular to a route (a route may also declare its own ``responses=``)."""
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = "#/components/schemas/ErrorAnswer"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def describe(app: FastAPI, metrics_role: str | None = None) -> dict[str, Any]:
    """The OpenAPI description of ``app``'s routes with every error answer they give."""
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description="supplychain: secure container images from registry to deploy",
        routes=app.routes,
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorAnswer"] = ErrorAnswer.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            roles = rule_of(method.upper(), path, metrics_role)
            if "422" in responses:
                responses["422"] = _error("invalid parameters or body")
            if "requestBody" in operation:
                responses.setdefault("413", _error("body over the limit"))
                responses.setdefault("422", _error("invalid parameters or body"))
            if roles is BY_SOURCE:
                responses.setdefault("401", _error("missing or wrong webhook credentials"))
            elif roles is not OPEN:
                responses.setdefault("401", _error("no token, or an unknown or expired one"))
                responses.setdefault("403", _error("the token's role may not call this route"))
            for status, text in STATUSES.get((method.upper(), path), {}).items():
                responses.setdefault(str(status), _error(text))
            responses.setdefault("503", _error("database unavailable: failing closed"))
    return spec


def render(spec: dict[str, Any]) -> str:
    """The description as checked in (``docs/openapi.json``): sorted keys, two-space indent."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
