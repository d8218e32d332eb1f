"""API tokens: made from 256 random bits, stored as a keyed SHA-256, checked in constant time.

A password hash (bcrypt, argon2) is for low-entropy secrets; these tokens have 256 random bits,
so one HMAC-SHA-256 keyed with the server pepper (``SUPPLYCHAIN_TOKEN_PEPPER``) resists guessing,
and a gate call pays microseconds for it. Known tokens are cached for :data:`CACHE_SECONDS`, so a
revocation made by another process applies within that time (at once in this one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.models import ApiToken, utcnow

__all__ = ["CACHE_SECONDS", "ROLES", "USE_AUDIT_SECONDS", "Principal", "TokenError", "TokenStore"]

ROLES = ("webhook", "ci", "auditor", "admin")
"""Every role a token may have."""
CACHE_SECONDS = 5.0
"""How long a checked token is trusted without reading its row again."""
USE_AUDIT_SECONDS = 60.0
"""A token's uses are audited once per this many seconds, with their count."""
MAX_COUNTERS = 10_000
"""Use and refusal counters kept in memory at most."""
TOKEN = re.compile(r"sc_(webhook|ci|auditor|admin)_[a-z2-7]{52}", re.ASCII)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)


class TokenError(Exception):
    """A token cannot be created or revoked as asked (never carries a token)."""


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to."""

    name: str
    """The token's unique name (``ci-main``…); the actor in the audit log."""
    role: str
    """One of :data:`ROLES`."""
    source: str | None
    """For a ``webhook`` token: the webhook source it may deliver to."""
    expires_at: datetime | None
    """When it stops working, if ever."""


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as ``tokens list`` shows it (no secret, no hash)."""

    name: str
    """Unique name."""
    role: str
    """One of :data:`ROLES`."""
    source: str | None
    """Webhook source, for ``webhook`` tokens."""
    created_at: datetime
    """When it was created."""
    created_by: str
    """Who created it."""
    expires_at: datetime | None
    """When it expires, if ever."""
    revoked_at: datetime | None
    """When it was revoked, if it was."""
    last_used_at: datetime | None
    """Last use recorded (at most :data:`USE_AUDIT_SECONDS` late)."""


def new_token(role: str) -> str:
    """A fresh token of ``role``: ``sc_<role>_`` and 256 random bits in lower-case base32."""
    random = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()
    return f"sc_{role}_{random}"


class TokenStore:
    """Creates, lists, revokes and checks tokens in the database."""

    def __init__(self, db: Database, pepper: str | None) -> None:
        self.db = db
        self._key = (pepper or "").encode()
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._uses: dict[str, tuple[float, int]] = {}

    def digest(self, token: str) -> str:
        """The stored form of ``token``: hex HMAC-SHA-256 under the pepper (SHA-256 without)."""
        if self._key:
            return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(token.encode()).hexdigest()

    def create(
        self,
        name: str,
        role: str,
        *,
        actor: str,
        source: str | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        """Store a new token and return it (the only time it is seen)."""
        if NAME.fullmatch(name) is None:
            raise TokenError("a token name is 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}")
        if (role == "webhook") != (source is not None):
            raise TokenError("a webhook token names its one source (--source), other roles none")
        if expires_at is not None and expires_at <= utcnow():
            raise TokenError("the expiry is in the past")
        token = new_token(role)
        with self.db.session(write=True) as session:
            if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
                raise TokenError(f"a token named {name!r} exists (revoke it or pick a new name)")
            session.add(
                ApiToken(
                    name=name,
                    role=role,
                    source=source,
                    token_hash=self.digest(token),
                    created_by=actor,
                    expires_at=expires_at,
                )
            )
            details = {"role": role, "source": source, "expires_at": _iso(expires_at)}
            audit(session, actor, "token.created", name, **details)
        return token

    def revoke(self, name: str, *, actor: str) -> None:
        """Revoke the token named ``name`` (at once in this process)."""
        with self.db.session(write=True) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None:
                raise TokenError(f"no token named {name!r}")
            if row.revoked_at is not None:
                raise TokenError(f"token {name!r} is already revoked")
            row.revoked_at = utcnow()
            audit(session, actor, "token.revoked", name, role=row.role)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].name != name}

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
            return [
                TokenInfo(
                    r.name,
                    r.role,
                    r.source,
                    r.created_at,
                    r.created_by,
                    r.expires_at,
                    r.revoked_at,
                    r.last_used_at,
                )
                for r in rows
            ]

    def check(self, token: str) -> Principal | None:
        """Who ``token`` belongs to; None when unknown, revoked, expired or malformed."""
        if TOKEN.fullmatch(token) is None:
            return None
        digest = self.digest(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            with self._loading:  # one read per token when many calls miss the cache at once
                with self._lock:
                    cached = self._cache.get(digest)
                if cached is None or now - cached[0] > CACHE_SECONDS:
                    principal = self._load(digest)
                    if principal is None:
                        return None
                    cached = (time.monotonic(), principal)
                    with self._lock:
                        self._cache[digest] = cached
        principal = cached[1]
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            return None
        return principal

    def _load(self, digest: str) -> Principal | None:
        with self.db.session() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            return Principal(row.name, row.role, row.source, row.expires_at)

    def _due(self, key: str) -> int | None:
        """Uses of ``key`` to audit now (this one included), or None inside the window."""
        now = time.monotonic()
        with self._lock:
            if len(self._uses) > MAX_COUNTERS:  # many remotes refused: start counting afresh
                self._uses.clear()
            since, count = self._uses.get(key, (-USE_AUDIT_SECONDS, 0))
            due = now - since >= USE_AUDIT_SECONDS
            self._uses[key] = (now, 0) if due else (since, count + 1)
        return count + 1 if due else None

    def due(self, key: str) -> bool:
        """True when the next use of ``key`` writes to the audit log."""
        with self._lock:
            since, _ = self._uses.get(key, (-USE_AUDIT_SECONDS, 0))
        return time.monotonic() - since >= USE_AUDIT_SECONDS

    def used(self, principal: Principal, route: str) -> None:
        """Count one use; audit the uses (and set ``last_used_at``) once per window."""
        count = self._due(f"use:{principal.name}")
        if count is None:
            return
        with self.db.session(write=True) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == principal.name))
            if row is not None:
                row.last_used_at = utcnow()
            audit(session, principal.name, "token.used", route, role=principal.role, uses=count)

    def refused(self, actor: str, route: str, reason: str) -> None:
        """Audit a refused request (once per window per actor, route and reason, counted)."""
        count = self._due(f"refused:{actor}:{route}:{reason}")
        if count is None:
            return
        with self.db.session(write=True) as session:
            audit(session, actor, "token.refused", route, reason=reason, refusals=count)

    def cached(self, token: str) -> bool:
        """True when :meth:`check` of ``token`` needs no database read."""
        if TOKEN.fullmatch(token) is None:
            return True
        with self._lock:
            cached = self._cache.get(self.digest(token))
        return cached is not None and time.monotonic() - cached[0] <= CACHE_SECONDS


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
