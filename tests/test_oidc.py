"""OIDC JWTs for the ``ci`` role, against a fake issuer (real keys, JWKS over loopback HTTP).

Every way a JWT can be wrong is refused: expired, another audience, another issuer, a key id the
issuer never published, a claim outside its condition, ``alg: none``, and an HS256 token keyed
with the issuer's public key. A valid one passes the gate route and nothing else ``ci`` may not
call (the route-by-role matrix, on PostgreSQL and SQLite), and the token is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import select

from supplychain.access.oidc import Jwks, OidcError, OidcIssuer, OidcVerifier
from supplychain.api.app import create_app
from supplychain.config import ConfigError
from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry
from supplychain.service import build_service
from tests.conftest import make_settings
from tests.support.fake_oidc import AUDIENCE, ISSUER, FakeIssuer, fake_issuer
from tests.test_roles import allowed, endpoints, url_of

CONDITIONS = (("repository", "acme/*"), ("ref", "refs/heads/main"))


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    with fake_issuer() as made:
        yield made


def verifier(issuer: FakeIssuer, clock: Clock | None = None) -> OidcVerifier:
    config = OidcIssuer(ISSUER, issuer.jwks_url, AUDIENCE, CONDITIONS, 600.0)
    jwks = Jwks(issuer.jwks_url, ttl=600.0, refetch=60.0, clock=clock or Clock())
    return OidcVerifier(config, jwks)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(issuer: FakeIssuer) -> str:
    """``alg: none`` with the real key's id."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    return f"{header}.{_b64(json.dumps(issuer.claims()).encode())}."


def hmac_with_public_key(issuer: FakeIssuer) -> str:
    """HS256 keyed with the issuer's public RSA key (PEM), which an attacker has."""
    private, _ = issuer.keys["k1"]
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[union-attr]
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = f"{header}.{_b64(json.dumps(issuer.claims()).encode())}"
    return f"{body}.{_b64(hmac.new(pem, body.encode(), hashlib.sha256).digest())}"


def relabelled(issuer: FakeIssuer) -> str:
    """An RS256 token whose header claims ES256 (the RSA key's kid)."""
    head, payload, signature = issuer.mint("k1").split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    return f"{_b64(json.dumps({**header, 'alg': 'ES256'}).encode())}.{payload}.{signature}"


def test_valid_tokens_of_either_key_type_are_ci(issuer: FakeIssuer) -> None:
    check = verifier(issuer)
    for kid in ("k1", "e1"):
        principal = check.verify(issuer.mint(kid))
        assert principal.role == "ci"
        assert principal.name == "oidc:repo:acme/app:ref:refs/heads/main"
        assert principal.expires_at is not None
    assert check.verify(issuer.mint(repository="acme/other")).role == "ci"  # the glob


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "ExpiredSignatureError"),
        ("audience", "InvalidAudienceError"),
        ("issuer", "InvalidIssuerError"),
        ("no-exp", "MissingRequiredClaimError"),
        ("repository", "claim 'repository'"),
        ("ref", "claim 'ref'"),
        ("no-repository", "claim 'repository'"),
        ("unknown-kid", "not in the issuer's JWKS"),
        ("none", "algorithm 'none'"),
        ("hs256", "algorithm 'HS256'"),
        ("relabelled", "does not match the token's algorithm"),
        ("tampered", "InvalidSignatureError"),
    ],
)
def test_every_wrong_token_is_refused(issuer: FakeIssuer, case: str, reason: str) -> None:
    issuer.add_key("k9", publish=False)
    head, _, signature = issuer.mint("k1").split(".")
    forged_claims = _b64(json.dumps(issuer.claims(repository="acme/app", sub="admin")).encode())
    token = {
        "expired": lambda: issuer.mint(exp=1_000_000, iat=999_000, nbf=999_000),
        "audience": lambda: issuer.mint(aud="someone-else"),
        "issuer": lambda: issuer.mint(iss="https://another-issuer.test"),
        "no-exp": lambda: issuer.mint(exp=None),
        "repository": lambda: issuer.mint(repository="evil/app"),
        "ref": lambda: issuer.mint(ref="refs/heads/feature"),
        "no-repository": lambda: issuer.mint(repository=None),
        "unknown-kid": lambda: issuer.mint("k9"),
        "none": lambda: unsigned(issuer),
        "hs256": lambda: hmac_with_public_key(issuer),
        "relabelled": lambda: relabelled(issuer),
        "tampered": lambda: f"{head}.{forged_claims}.{signature}",
    }[case]()
    check = verifier(issuer)
    with pytest.raises(OidcError, match=reason):
        check.verify(token)
    assert check.check(token) is None


def test_rotated_keys_are_fetched_again_rate_limited(issuer: FakeIssuer) -> None:
    clock = Clock()
    check = verifier(issuer, clock)
    check.verify(issuer.mint("k1"))
    check.verify(issuer.mint("e1"))
    assert issuer.fetches == 1  # cached
    issuer.add_key("k2")  # the issuer rotates: a new kid appears
    clock.now += 61
    assert check.verify(issuer.mint("k2")).role == "ci"
    assert issuer.fetches == 2
    issuer.add_key("k3")
    for _ in range(5):  # within a minute of the last fetch: no fetch, refused
        assert check.check(issuer.mint("k3")) is None
    assert issuer.fetches == 2
    clock.now += 61
    assert check.verify(issuer.mint("k3")).role == "ci"
    assert issuer.fetches == 3
    issuer.published.remove("k1")  # retired; still cached until the TTL ends
    assert check.verify(issuer.mint("k1")).role == "ci"
    clock.now += 601
    assert check.check(issuer.mint("k1")) is None
    assert issuer.fetches == 4


def test_an_unreachable_jwks_refuses(issuer: FakeIssuer) -> None:
    check = verifier(issuer)
    check.jwks.url = f"{issuer.url}/missing.json"
    with pytest.raises(OidcError, match="HTTP 404"):
        check.verify(issuer.mint("k1"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"oidc_jwks_url": "http://issuer.example/jwks"}, "must be https"),
        ({"oidc_claims": ""}, "go together"),
        ({"oidc_audience": ""}, "go together"),
        ({"oidc_claims": "repository"}, "claim=pattern"),
    ],
)
def test_settings_refuse_an_unsafe_issuer(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    base = {
        "oidc_issuer": ISSUER,
        "oidc_jwks_url": "https://issuer.example/jwks",
        "oidc_audience": AUDIENCE,
        "oidc_claims": "repository=acme/*",
    }
    with pytest.raises(ConfigError, match=message):
        make_settings(tmp_path, "sqlite://", **{**base, **overrides})


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'oidc.db'}"
        Database(url).upgrade()
        yield url
    else:
        request.getfixturevalue("db")  # emptied first
        yield request.getfixturevalue("pg_url")


def test_a_valid_jwt_is_ci_on_every_route_and_never_logged(
    tmp_path: Path, database_url: str, issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        registries="127.0.0.1:9",
        oidc_issuer=ISSUER,
        oidc_jwks_url=issuer.jwks_url,
        oidc_audience=AUDIENCE,
        oidc_claims="repository=acme/*,ref=refs/heads/main",
    )
    service = build_service(settings)
    app = create_app(service, workers=0)
    good = issuer.mint("e1")
    bad = issuer.mint("k1", repository="evil/app")
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:

        def send(method: str, path: str, token: str) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            return client.request(method, url_of(path), content=body, headers=headers)  # type: ignore[return-value]

        routes = endpoints(app.routes)
        for method, path in routes:
            answer = send(method, path, good)
            refused = answer.status_code in (401, 403)
            assert refused != allowed(method, path, "ci"), f"{method} {path}: {answer.status_code}"
        gate = send("POST", "/v1/gate", good)
        assert gate.status_code not in (401, 403), gate.text
        assert send("POST", "/v1/gate", bad).status_code == 401
        assert send("GET", "/v1/tokens", good).status_code == 403
        assert send("POST", "/v1/gate", unsigned(issuer)).status_code == 401
    with service.db.session() as session:
        audited = session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.details))
        rows = [(actor, action, json.dumps(details)) for actor, action, details in audited]
    assert ("oidc:repo:acme/app:ref:refs/heads/main", "token.used") in {r[:2] for r in rows}
    logged = caplog.text + "".join(map(str, rows))
    for token in (good, bad):
        for part in token.split("."):
            assert part not in logged
