"""A fake OIDC issuer for tests: real keys, real signatures, its JWKS served over loopback HTTP.

A fake, named as one: the real issuers (GitHub Actions' ``token.actions.githubusercontent.com``)
are unreachable here. It holds RSA and EC keys made with ``cryptography``, serves their public
halves as a JWKS at ``/jwks.json`` from a thread, counts the fetches, and mints JWTs signed with
PyJWT, shaped like GitHub Actions tokens (``repository``, ``ref``, ``sub`` …).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ISSUER = "https://fake-issuer.test"
AUDIENCE = "supplychain-test"


@dataclass
class FakeIssuer:
    """Keys by ``kid`` (the JWKS serves those in :attr:`published`), and a fetch counter."""

    url: str = ""
    keys: dict[str, tuple[PrivateKeyTypes, str]] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served."""
        return f"{self.url}/jwks.json"

    def add_key(self, kid: str, kind: str = "rsa", *, publish: bool = True) -> None:
        """Make a new ``rsa`` (RS256) or ``ec`` (ES256) key; serve it unless ``publish`` is off."""
        if kind == "rsa":
            self.keys[kid] = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "RS256",
            )
        else:
            self.keys[kid] = (ec.generate_private_key(ec.SECP256R1()), "ES256")
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        """The published keys' public halves as a JWKS."""
        out = []
        for kid in self.published:
            private, alg = self.keys[kid]
            algorithm = jwt.get_algorithm_by_name(alg)
            public = json.loads(algorithm.to_jwk(private.public_key()))  # type: ignore[union-attr]
            out.append({**public, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": out}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitHub-Actions-shaped claims, valid for ten minutes; ``None`` values are removed."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository": "acme/app",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, kid: str = "k1", **overrides: Any) -> str:
        """A JWT signed with key ``kid``, the default claims changed by ``overrides``."""
        private, alg = self.keys[kid]
        return jwt.encode(self.claims(**overrides), private, algorithm=alg, headers={"kid": kid})


@contextmanager
def fake_issuer() -> Iterator[FakeIssuer]:
    """A :class:`FakeIssuer` with one RSA key ``k1`` and one EC key ``e1``, served on loopback."""
    issuer = FakeIssuer()
    issuer.add_key("k1", "rsa")
    issuer.add_key("e1", "ec")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/jwks.json":
                self.send_error(404)
                return
            issuer.fetches += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-oidc", daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
