"""Stand-ins for cloud services unreachable here, named as such: an SNS signing-certificate
host and a Pub/Sub OIDC issuer. Both use real keys and real X.509/JWT made with
``cryptography`` and PyJWT; only the network endpoint is faked."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from registry_hooks.sns import string_to_sign

REGION = "us-west-2"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:ecr-pushes"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


def _certificate(key: rsa.RSAPrivateKey, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class FakeSnsCertificateServer:
    """Serves one SNS signing certificate at :data:`CERT_URL` and signs messages with its key.

    ``fetch`` is the certificate fetcher handed to :class:`~registry_hooks.sns.SnsVerifier`; it
    records every URL it is asked for, so a test can assert nothing else was fetched.
    """

    def __init__(self, *, expired: bool = False) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        start, end = (
            (now - timedelta(days=10), now - timedelta(days=1))
            if expired
            else (
                now - timedelta(days=1),
                now + timedelta(days=365),
            )
        )
        self.pem = _certificate(self.key, start, end)
        self.requested: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.requested.append(url)
        if url != CERT_URL:
            raise OSError(f"404 {url}")
        return self.pem

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        """``message`` with SignatureVersion, SigningCertURL and a real Signature added."""
        signed = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
        signature = self.key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed


def sns_notification(message: str, *, timestamp: datetime | None = None) -> dict[str, Any]:
    """An unsigned SNS ``Notification`` from :data:`TOPIC` carrying ``message``."""
    stamp = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "Type": "Notification",
        "MessageId": hashlib.sha256(message.encode()).hexdigest()[:32],
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": stamp,
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&x=1",
    }


class FakeOidcIssuer:
    """A Google-like OIDC issuer: an RSA key, its JWKS, and push tokens signed with it."""

    def __init__(self, kid: str = "fake-key-1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": "https://accounts.google.com",
            "aud": "https://scanner.example.com/v1/hooks/gar",
            "email": "pubsub-push@project.iam.gserviceaccount.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            "sub": "113774264463038321964",
        }
        body.update(claims)
        body = {key: value for key, value in body.items() if value is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})
