"""OIDC JWTs for the ``ci`` role: a CI job's identity token instead of a stored token.

A JWT is accepted only when ``SUPPLYCHAIN_OIDC_ISSUER`` is set, and then only when:

* its header names an asymmetric algorithm (:data:`ALGORITHMS`; ``none`` and the HMAC ones are
  refused, so a public key can never be used as an HMAC secret) and a key id (``kid``);
* that key is in the issuer's JWKS, fetched only from the configured ``SUPPLYCHAIN_OIDC_JWKS_URL``
  (https; plain http to loopback only), with the key's type and stated algorithm matching;
* the signature verifies, ``iss`` equals the issuer, ``aud`` contains the configured audience,
  ``exp`` is in the future and ``iat`` present (:data:`LEEWAY_SECONDS` of clock skew);
* every claim condition holds (``repository=org/*,ref=refs/heads/main``: shell-style patterns,
  case-sensitive, the claim must be a string). At least one is required: an issuer such as
  GitHub signs tokens for every repository on it, with any audience its users ask for.

The JWKS is cached for ``SUPPLYCHAIN_OIDC_JWKS_TTL_SECONDS``; a ``kid`` it does not hold (the
issuer rotated its keys) fetches it again, at most once per :data:`REFETCH_SECONDS`. A failed
fetch refuses the token (never an allow on error). A JWT only ever grants ``ci``. Tokens are
never logged; a refusal logs its reason only.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
import requests

from supplychain.access.tokens import Principal
from supplychain.config import Settings
from supplychain.registry.errors import NotAllowedError
from supplychain.registry.network import check_outbound_url
from supplychain.registry.transport import checked_session

__all__ = [
    "ALGORITHMS",
    "Jwks",
    "OidcError",
    "OidcIssuer",
    "OidcVerifier",
    "looks_like_jwt",
    "oidc_verifier",
]

log = logging.getLogger("supplychain.access.oidc")

ALGORITHMS = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
}
"""Algorithms accepted, with the JWK key type each needs."""
REFETCH_SECONDS = 60.0
"""Least time between two JWKS fetches (an unknown ``kid`` or a failure)."""
LEEWAY_SECONDS = 60
"""Clock skew allowed on ``exp``, ``iat`` and ``nbf``."""
MAX_JWKS_BYTES = 256 * 1024
"""Largest JWKS document read."""
MAX_TOKEN_BYTES = 16 * 1024
"""Longest JWT looked at."""


class OidcError(Exception):
    """A JWT is refused or the JWKS cannot be had (the message never holds the token)."""


@dataclass(frozen=True)
class OidcIssuer:
    """The one OIDC issuer whose JWTs may act as ``ci``."""

    issuer: str
    """The exact ``iss`` claim (``https://token.actions.githubusercontent.com``)."""
    jwks_url: str
    """Where its JWKS is fetched (https; http only to loopback)."""
    audience: str
    """The ``aud`` the token must be made for."""
    claims: tuple[tuple[str, str], ...]
    """``(claim, pattern)`` conditions, all required (shell-style, case-sensitive)."""
    jwks_ttl_seconds: float = 3600.0
    """How long a fetched JWKS is used before it is fetched again."""


def looks_like_jwt(token: str) -> bool:
    """True for a compact JWS (three base64url parts), which our own tokens never are."""
    return token.count(".") == 2 and len(token) <= MAX_TOKEN_BYTES and not token.startswith("sc_")


class Jwks:
    """The issuer's keys by ``kid``, fetched from the configured URL only, cached with a TTL."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        refetch: float = REFETCH_SECONDS,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 10.0,
    ) -> None:
        check_outbound_url(url)  # https, or http to loopback; never a metadata address
        self.url = url
        self.ttl = ttl
        self.refetch = refetch
        self.timeout = timeout
        self._session = session or checked_session()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched: float | None = None
        self._attempted: float | None = None
        self.fetches = 0
        """JWKS fetches made (for tests and metrics)."""

    def key(self, kid: str) -> dict[str, Any]:
        """The JWK with ``kid``; fetches when the cache expired or the ``kid`` is new."""
        with self._lock:
            now = self._clock()
            if self._fetched is None or now - self._fetched >= self.ttl:
                self._keys = {}
                self._fetch(now)
            elif kid not in self._keys:
                self._fetch(now)  # rotated keys: fetch again, rate-limited
            found = self._keys.get(kid)
        if found is None:
            raise OidcError("the token's key id is not in the issuer's JWKS")
        return found

    def _fetch(self, now: float) -> None:
        if self._attempted is not None and now - self._attempted < self.refetch:
            if not self._keys:
                raise OidcError("the issuer's JWKS could not be fetched lately; refusing")
            return
        self._attempted = now
        self.fetches += 1
        try:
            check_outbound_url(self.url)
            with self._session.get(
                self.url,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json", "User-Agent": "supplychain"},
            ) as response:
                if response.status_code != 200:
                    raise OidcError(f"the JWKS URL answered HTTP {response.status_code}")
                body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        except (requests.RequestException, NotAllowedError, OSError) as exc:
            raise OidcError(f"the JWKS could not be fetched: {type(exc).__name__}") from None
        if len(body) > MAX_JWKS_BYTES:
            raise OidcError("the JWKS is too large")
        try:
            document = json.loads(body)
        except ValueError:
            raise OidcError("the JWKS is not JSON") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise OidcError("the JWKS has no key list")
        self._keys = {
            str(k["kid"]): k
            for k in keys[:100]
            if isinstance(k, dict)
            and isinstance(k.get("kid"), str)
            and k.get("use", "sig") == "sig"
        }
        self._fetched = now


class OidcVerifier:
    """Checks JWTs of the configured issuer; a valid one is a ``ci`` principal."""

    def __init__(self, issuer: OidcIssuer, jwks: Jwks | None = None) -> None:
        if not issuer.claims:
            raise ValueError("an OIDC issuer needs at least one claim condition")
        self.issuer = issuer
        self.jwks = jwks or Jwks(issuer.jwks_url, ttl=issuer.jwks_ttl_seconds)

    def check(self, token: str) -> Principal | None:
        """The ``ci`` principal of a valid ``token``; None (reason logged) otherwise."""
        try:
            return self.verify(token)
        except OidcError as exc:
            log.info("OIDC token refused", extra={"reason": str(exc)})
            return None

    def verify(self, token: str) -> Principal:
        """The ``ci`` principal of ``token``; :class:`OidcError` saying why not."""
        if not looks_like_jwt(token):
            raise OidcError("not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("malformed JWT header") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise OidcError(f"algorithm {str(algorithm)[:16]!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise OidcError("the JWT names no key id")
        jwk = self.jwks.key(kid)
        if jwk.get("kty") != ALGORITHMS[algorithm] or jwk.get("alg", algorithm) != algorithm:
            raise OidcError("the key does not match the token's algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.issuer.audience,
                issuer=self.issuer.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud"], "verify_signature": True},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise OidcError(f"JWT refused: {type(exc).__name__}") from None
        for name, pattern in self.issuer.claims:
            value = claims.get(name)
            if not isinstance(value, str) or not fnmatch.fnmatchcase(value, pattern):
                raise OidcError(f"claim {name!r} does not match its condition")
        subject = str(claims.get("sub") or "unknown")[:200]
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return Principal(f"oidc:{subject}", "ci", None, expires)


def oidc_verifier(settings: Settings) -> OidcVerifier | None:
    """The verifier ``settings`` configure; None when no OIDC issuer is set."""
    if settings.oidc_issuer is None:
        return None
    assert settings.oidc_jwks_url is not None and settings.oidc_audience is not None  # noqa: S101 - load_settings checked
    issuer = OidcIssuer(
        settings.oidc_issuer,
        settings.oidc_jwks_url,
        settings.oidc_audience,
        settings.oidc_claims,
        settings.oidc_jwks_ttl_seconds,
    )
    return OidcVerifier(issuer)
