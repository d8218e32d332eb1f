"""The rule of every route: which roles may call it, checked before the route runs.

:data:`RULES` names every route of the app by method and path template; a route without a rule
is refused to everyone (and fails the route-by-role test). The webhook route's rule is
:data:`BY_SOURCE`: the intake authenticates each source with its own token or key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from supplychain.access.oidc import OidcVerifier, looks_like_jwt
from supplychain.access.tokens import ROLES, Principal, TokenStore

__all__ = ["BY_SOURCE", "OPEN", "RULES", "authorizer", "rule_of"]

OPEN: frozenset[str] = frozenset({"*"})
"""Anyone, without a token (health and readiness)."""
BY_SOURCE: frozenset[str] = frozenset({"webhook"})
"""Webhooks: checked by the intake against the source's own token or key."""
CI = frozenset({"ci"})
AUDITOR = frozenset({"auditor"})
ADMIN = frozenset({"admin"})

RULES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/hooks/{source}"): BY_SOURCE,
    ("POST", "/v1/gate"): CI,
    ("POST", "/v1/admission/validate"): CI,
    ("POST", "/v1/admission/mutate"): CI,
    ("GET", "/v1/verdicts"): AUDITOR,
    ("GET", "/v1/jobs/{job_id}"): AUDITOR,
    ("GET", "/v1/audit"): AUDITOR,
    ("GET", "/v1/tokens"): ADMIN,
    ("POST", "/v1/tokens"): ADMIN,
    ("DELETE", "/v1/tokens/{name}"): ADMIN,
    ("GET", "/v1/waivers"): AUDITOR | ADMIN,
    ("POST", "/v1/waivers"): ADMIN,
    ("DELETE", "/v1/waivers/{waiver_id}"): ADMIN,
    ("GET", "/v1/history/images/{digest}"): AUDITOR | ADMIN,
    ("GET", "/v1/history/repositories"): AUDITOR | ADMIN,
    ("GET", "/v1/history/attestations"): AUDITOR | ADMIN,
    ("GET", "/v1/history/verdicts"): AUDITOR | ADMIN,
    ("GET", "/v1/history/affected"): AUDITOR | ADMIN,
    ("GET", "/v1/history/decision"): AUDITOR | ADMIN,
    ("GET", "/v1/history/sboms/{scan_id}"): AUDITOR | ADMIN,
    ("GET", "/v1/history/attestations/{attestation_id}/envelope"): AUDITOR | ADMIN,
    ("GET", "/v1/openapi.json"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
}
"""Roles allowed per (method, path template); ``/metrics`` follows ``SUPPLYCHAIN_METRICS_ROLE``.
A new route gets its line here (policy, waivers, keys: ``ADMIN``), else it is refused to all."""


def rule_of(method: str, path: str, metrics_role: str | None) -> frozenset[str] | None:
    """The roles allowed on a route; None for a route without a rule (refused to all)."""
    if (method, path) == ("GET", "/metrics"):
        return OPEN if metrics_role is None else frozenset({metrics_role})
    return RULES.get((method, path))


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authorizer(
    tokens: TokenStore, metrics_role: str | None, oidc: OidcVerifier | None = None
) -> Callable[[Request], Awaitable[Principal | None]]:
    """The app-wide dependency refusing every request its route's rule does not allow.

    A known, cached token costs one HMAC and a dict look-up; the database is read only on a
    cache miss and written (audit) once per token per minute, both off the event loop. With
    ``oidc``, a JWT of the configured issuer is a ``ci`` principal (:mod:`supplychain.access.oidc`).
    """
    if metrics_role is not None and metrics_role not in ROLES:
        raise ValueError(f"unknown role {metrics_role!r}")

    async def authorize(request: Request) -> Principal | None:
        route = request.scope.get("route")
        template = getattr(route, "path", None) or ""
        roles = rule_of(request.method, template, metrics_role)
        if roles is OPEN or roles is BY_SOURCE:
            return None
        where = f"{request.method} {template}"
        remote = request.client.host if request.client else "unknown"
        if roles is None:
            await _refuse(tokens, f"remote:{remote}", where, "route has no access rule")
            raise HTTPException(403, "this route has no access rule: refused to every role")
        token = _bearer(request)
        if token is None:
            await _refuse(tokens, f"remote:{remote}", where, "no token")
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if oidc is not None and looks_like_jwt(token):
            principal = await run_in_threadpool(oidc.check, token)
        elif tokens.cached(token):
            principal = tokens.check(token)
        else:
            principal = await run_in_threadpool(tokens.check, token)
        if principal is None:
            await _refuse(tokens, f"remote:{remote}", where, "unknown, revoked or expired token")
            raise HTTPException(
                401, "unknown, revoked or expired token", headers={"WWW-Authenticate": "Bearer"}
            )
        if principal.role not in roles:
            await _refuse(tokens, principal.name, where, f"role {principal.role} not allowed")
            raise HTTPException(403, f"role {principal.role!r} may not call {where}")
        if tokens.due(f"use:{principal.name}"):
            await run_in_threadpool(tokens.used, principal, where)
        else:
            tokens.used(principal, where)
        request.state.principal = principal
        return principal

    return authorize


async def _refuse(tokens: TokenStore, actor: str, where: str, reason: str) -> None:
    if tokens.due(f"refused:{actor}:{where}:{reason}"):
        await run_in_threadpool(tokens.refused, actor, where, reason)
    else:
        tokens.refused(actor, where, reason)
