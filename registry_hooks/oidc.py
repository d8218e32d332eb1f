"""OIDC push tokens of Pub/Sub push subscriptions, checked with PyJWT.

Source: https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions. The push request
carries ``Authorization: Bearer <JWT>`` signed by Google (RS256) with claims ``iss``
(``https://accounts.google.com`` or ``accounts.google.com``), ``aud`` (the subscription's
configured audience, by default the push endpoint URL), ``email`` (the subscription's service
account), ``email_verified``, ``iat`` and ``exp``. Keys come from an injectable :data:`KeySet`:
:func:`google_key_set` reads Google's fixed JWKS URL (never a URL from the request),
:func:`static_key_set` takes a JWKS document (an operator's copy, or a test issuer's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt

from registry_hooks.interface import HookError

__all__ = [
    "GOOGLE_ISSUERS",
    "GOOGLE_JWKS_URL",
    "KeySet",
    "PushTokenVerifier",
    "google_key_set",
    "static_key_set",
]

GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
ALGORITHMS = ["RS256"]

KeySet = Callable[[str], Any]
"""Key id (``kid``) → the public key to verify with; raises :class:`HookError` if unknown."""


def static_key_set(jwks: Mapping[str, Any]) -> KeySet:
    """A :data:`KeySet` over a JWKS document ``{"keys": [...]}``."""
    try:
        keys = {key.key_id: key.key for key in jwt.PyJWKSet.from_dict(dict(jwks)).keys}
    except jwt.PyJWTError as exc:
        raise HookError(f"unusable JWKS: {exc}") from None

    def lookup(kid: str) -> Any:
        if kid not in keys:
            raise HookError("the token's key id is not in the key set")
        return keys[kid]

    return lookup


def google_key_set() -> KeySet:
    """A :data:`KeySet` fetching Google's OAuth2 JWKS (cached by PyJWT for five minutes)."""
    client = jwt.PyJWKClient(GOOGLE_JWKS_URL, cache_jwk_set=True, lifespan=300, timeout=5)

    def lookup(kid: str) -> Any:
        try:
            return client.get_signing_key(kid).key
        except jwt.PyJWTError as exc:
            raise HookError(f"no Google signing key {kid[:64]!r}: {exc}") from None

    return lookup


class PushTokenVerifier:
    """Checks a push request's OIDC token: signature, issuer, audience, expiry, sender."""

    def __init__(
        self,
        keys: KeySet,
        audience: str,
        service_accounts: Iterable[str],
        issuers: Iterable[str] = GOOGLE_ISSUERS,
        leeway: float = 60.0,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.service_accounts = frozenset(service_accounts)
        self.issuers = frozenset(issuers)
        self.leeway = leeway

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, when every check passes; :class:`HookError` otherwise."""
        if not self.audience or not self.service_accounts:
            raise HookError("no audience or service account is configured")
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if not isinstance(kid, str) or header.get("alg") not in ALGORITHMS:
                raise HookError("the token names no key id or an unexpected algorithm")
            claims = jwt.decode(
                token,
                self.keys(kid),
                algorithms=ALGORITHMS,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "email"]},
            )
        except jwt.PyJWTError as exc:
            raise HookError(f"push token refused: {exc}") from None
        if claims.get("iss") not in self.issuers:
            raise HookError("push token has an unexpected issuer")
        email, verified = claims.get("email"), claims.get("email_verified")
        if email not in self.service_accounts or verified is not True:
            raise HookError("push token is not from a configured, verified service account")
        return claims
