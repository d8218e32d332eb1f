"""Registry authentication: credentials, ``WWW-Authenticate`` challenges and bearer tokens.

Token flow (distribution ``docs/spec/auth/token.md``): a 401 names a ``realm``; we GET
``realm?service=..&scope=..`` (Basic credentials when we have them; an identity token is used as an
OAuth2 refresh token with POST) and use ``token`` or ``access_token`` as ``Authorization: Bearer``.
Tokens are cached per (registry, scope) until shortly before ``expires_in`` (default 60 s) runs out.

The realm is chosen by the registry, so it is an SSRF vector (see
:func:`~supplychain.registry.network.check_outbound_url`): we only follow it when it is ``https``,
or plain ``http`` to a loopback host or to a host:port configured as insecure (a deliberate
operator choice). Whatever the scheme, the host must not be or resolve to a link-local (cloud
metadata, 169.254.0.0/16, fe80::/10), unspecified, multicast or reserved address, must not carry
user-info, and the token request does not follow redirects. Private networks are allowed: internal
registries have internal token servers. Credentials go to the realm the registry names, as with
Docker. Secrets never appear in logs or errors.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from supplychain.registry.errors import AuthError
from supplychain.registry.network import check_outbound_url, read_limited

__all__ = [
    "Authenticator",
    "Challenge",
    "CredentialStore",
    "Credentials",
    "DockerConfigCredentials",
    "StaticCredentials",
    "docker_credentials",
    "parse_www_authenticate",
]

log = logging.getLogger(__name__)

MAX_TOKEN_RESPONSE = 1024 * 1024
DEFAULT_EXPIRES_IN = 60
_EXPIRY_MARGIN = 10.0
_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)")
_PARAM_RE = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?'
)


@dataclass(frozen=True)
class Credentials:
    """Username/password, or an identity (refresh) token; secrets are kept out of ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)


class CredentialStore(ABC):
    """Where credentials for a registry host come from."""

    @abstractmethod
    def get(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (``host[:port]``), or None for anonymous access."""


class StaticCredentials(CredentialStore):
    """Explicit credentials per registry host."""

    def __init__(self, entries: Mapping[str, Credentials]) -> None:
        self._entries = {host.lower(): creds for host, creds in entries.items()}

    def get(self, registry: str) -> Credentials | None:
        return self._entries.get(registry.lower())


class DockerConfigCredentials(CredentialStore):
    """Credentials from the Docker config (``~/.docker/config.json`` or ``DOCKER_CONFIG``),
    including ``credsStore``/``credHelpers`` helpers, through the ``docker`` package."""

    def __init__(self, config_path: str | None = None) -> None:
        self.config_path = config_path

    def get(self, registry: str) -> Credentials | None:
        import docker.auth
        import docker.errors

        try:
            config = docker.auth.load_config(self.config_path)
            entry = docker.auth.resolve_authconfig(config, registry)
        except (docker.errors.DockerException, OSError, ValueError) as exc:
            # The docker package's errors can quote helper output: log the type only.
            log.warning(
                "docker credentials unavailable",
                extra={"registry": registry, "error": type(exc).__name__},
            )
            return None
        if not isinstance(entry, dict):
            return None
        token = entry.get("IdentityToken") or entry.get("identitytoken")
        user = entry.get("username") or entry.get("Username") or ""
        password = entry.get("password") or entry.get("Password") or ""
        if isinstance(token, str) and token:
            return Credentials(identity_token=token)
        if isinstance(user, str) and isinstance(password, str) and (user or password):
            return Credentials(username=user, password=password)
        return None


def docker_credentials(config_path: str | None = None) -> CredentialStore:
    """The user's Docker credentials (read on each use, so ``docker login`` takes effect)."""
    return DockerConfigCredentials(config_path)


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: lowercased scheme and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="..",service="..",scope=".."`` (or ``Basic realm=".."``, or several)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if param is None:
                break
            value = param.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
        pos = _skip_separators(header, pos)
    return challenges


def _skip_separators(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " ,\t":
        pos += 1
    return pos


class Authenticator:
    """Answers registry challenges; caches the ``Authorization`` value per (registry, scope)."""

    def __init__(
        self,
        session: requests.Session,
        credentials: CredentialStore | None,
        *,
        timeout: float,
        plain_http_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.session = session
        self.credentials = credentials
        self.timeout = timeout
        self.plain_http_hosts = plain_http_hosts
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached(self, registry: str, scope: str) -> str | None:
        """A still-valid ``Authorization`` value for (registry, scope), if any."""
        with self._lock:
            entry = self._tokens.get((registry, scope))
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._tokens[(registry, scope)]
                return None
            return entry[0]

    def forget(self, registry: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((registry, scope), None)

    def authorize(self, registry: str, scope: str, www_authenticate: str) -> str:
        """Answer a 401's challenge: return the ``Authorization`` value to retry with."""
        challenges = {c.scheme: c for c in parse_www_authenticate(www_authenticate)}
        creds = self.credentials.get(registry) if self.credentials is not None else None
        if "bearer" in challenges:
            value, lifetime = self._bearer(challenges["bearer"], scope, creds)
        elif "basic" in challenges:
            if creds is None or not (creds.username or creds.password):
                raise AuthError(f"{registry} asks for basic auth and no credentials are configured")
            pair = f"{creds.username}:{creds.password}".encode()
            value, lifetime = "Basic " + base64.b64encode(pair).decode("ascii"), 3600.0
        else:
            raise AuthError(f"{registry} answered 401 without a supported challenge")
        with self._lock:
            self._tokens[(registry, scope)] = (value, time.monotonic() + lifetime)
        return value

    def _bearer(
        self, challenge: Challenge, scope: str, creds: Credentials | None
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        check_outbound_url(realm, plain_http_hosts=self.plain_http_hosts)
        host = urlsplit(realm).netloc
        query = {"scope": challenge.params.get("scope") or scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        try:
            if creds is not None and creds.identity_token:
                form = {**query, "grant_type": "refresh_token", "client_id": "supplychain"}
                form["refresh_token"] = creds.identity_token
                response = self.session.post(
                    realm, data=form, timeout=self.timeout, allow_redirects=False, stream=True
                )
            else:
                auth = (creds.username, creds.password) if creds and creds.username else None
                if creds is not None and creds.username:
                    query["account"] = creds.username
                response = self.session.get(
                    realm,
                    params=query,
                    auth=auth,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
        except requests.RequestException as exc:
            raise AuthError(f"token request to {host} failed: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                raise AuthError(f"token server {host} answered HTTP {response.status_code}")
            body = read_limited(response, MAX_TOKEN_RESPONSE, f"token response from {host}")
        try:
            document = json.loads(body)
        except ValueError:
            raise AuthError(f"token server {host} sent malformed JSON") from None
        token = (
            document.get("token") or document.get("access_token")
            if isinstance(document, dict)
            else None
        )
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {host} sent no token")
        expires_in = document.get("expires_in", DEFAULT_EXPIRES_IN)
        if (
            not isinstance(expires_in, int)
            or isinstance(expires_in, bool)
            or expires_in < DEFAULT_EXPIRES_IN
        ):
            expires_in = DEFAULT_EXPIRES_IN
        return f"Bearer {token}", max(float(expires_in) - _EXPIRY_MARGIN, 1.0)
