"""Authentication helpers shared by adapters."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping

from registry_hooks.interface import HookError

log = logging.getLogger(__name__)


def bearer_matches(headers: Mapping[str, str], secret: str) -> bool:
    """``Authorization: Bearer <secret>``, compared in constant time."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token or not secret:
        return False
    return hmac.compare_digest(token.strip().encode(), secret.encode())


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def passes(what: str, check: Callable[[], object]) -> bool:
    """True when ``check`` returns; False (logged, without the secret) when it raises
    :class:`HookError`. For ``authenticate``, which must never raise."""
    try:
        check()
    except HookError as exc:
        log.warning("%s refused: %s", what, exc)
        return False
    return True


class BearerTokenAuth:
    """``authenticate`` for senders that send a static ``Authorization: Bearer <secret>``."""

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """True when the bearer token equals ``secret`` (constant-time comparison)."""
        return bearer_matches(headers, secret)
