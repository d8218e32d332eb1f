"""Who signs: a key file, HashiCorp Vault's transit engine, or Sigstore keyless (OIDC + Fulcio).

:class:`Signer` signs bytes the way cosign's key-pair mode does (see :mod:`.keys`); it is what
the ``.sig``/``.att`` storage and DSSE use. Keyless signing is a different shape (Fulcio issues a
certificate, Rekor logs the entry, the result is a Sigstore bundle), so :class:`KeylessSigner` is
its own class built on sigstore-python. Private keys stay inside their signer: never logged,
never written unencrypted, never in ``repr``.
"""

from __future__ import annotations

import base64
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from supplychain.signatures.keys import (
    KeyFileError,
    PrivateKey,
    PublicKey,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
    sign_bytes,
    verify_bytes,
)

__all__ = [
    "KeyFileSigner",
    "KeylessSigner",
    "Signer",
    "SignerError",
    "VaultTransitSigner",
    "key_password",
    "signer_for",
]


class SignerError(Exception):
    """A signature could not be made (key unreadable, Vault refused, no OIDC token…)."""


class Signer(ABC):
    """Signs bytes with one key whose public half verifiers know."""

    @property
    @abstractmethod
    def public_key(self) -> PublicKey:
        """The public key that verifies this signer's signatures."""

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """The raw signature of ``data``; raise :class:`SignerError` on failure."""

    @property
    def key_id(self) -> str:
        """``sha256:<hex>`` of the public key (see :func:`.keys.key_id`)."""
        return key_id(self.public_key)

    @property
    def public_key_pem(self) -> bytes:
        """PKIX PEM of the public key."""
        return public_pem(self.public_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id})"


class KeyFileSigner(Signer):
    """Signs with a private key held in memory (from a PEM or cosign key file)."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path, password: bytes | None) -> KeyFileSigner:
        """Read ``path`` (cosign's encrypted file or PEM); raise :class:`SignerError`."""
        try:
            return cls(load_private_key(path.read_bytes(), password))
        except OSError as exc:
            raise SignerError(f"cannot read key file {path}: {exc.strerror}") from None
        except KeyFileError as exc:
            raise SignerError(f"key file {path}: {exc}") from None

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return sign_bytes(self._key, data)


class VaultTransitSigner(Signer):
    """Signs with a key that never leaves HashiCorp Vault's transit secrets engine.

    ``client`` is an authenticated :class:`hvac.Client`. ECDSA signatures are requested ASN.1
    marshalled over SHA-256 and RSA ones PKCS#1 v1.5 over SHA-256, so they verify exactly as
    cosign's key-pair signatures do; every signature is checked against the public key before use.
    """

    def __init__(self, client: Any, key_name: str, *, mount_point: str = "transit") -> None:
        self.client = client
        self.key_name = key_name
        self.mount_point = mount_point
        self._public: PublicKey | None = None

    @property
    def public_key(self) -> PublicKey:
        if self._public is None:
            self._public = self._read_public_key()
        return self._public

    def _read_public_key(self) -> PublicKey:
        try:
            answer = self.client.secrets.transit.read_key(
                name=self.key_name, mount_point=self.mount_point
            )
            data = answer["data"]
            latest = str(data["latest_version"])
            material = str(data["keys"][latest]["public_key"])
            kind = str(data["type"])
        except Exception as exc:  # hvac raises many types; none may leak secrets
            raise SignerError(
                f"vault: cannot read transit key {self.key_name!r}: {type(exc).__name__}"
            ) from None
        if kind == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(material))
        try:
            return load_public_key(material.encode())
        except KeyFileError as exc:
            raise SignerError(f"vault: transit key {self.key_name!r}: {exc}") from None

    def sign(self, data: bytes) -> bytes:
        public = self.public_key
        options: dict[str, str] = {}
        if isinstance(public, ec.EllipticCurvePublicKey):
            options = {"hash_algorithm": "sha2-256", "marshaling_algorithm": "asn1"}
        elif isinstance(public, rsa.RSAPublicKey):
            options = {"hash_algorithm": "sha2-256", "signature_algorithm": "pkcs1v15"}
        try:
            answer = self.client.secrets.transit.sign_data(
                name=self.key_name,
                hash_input=base64.b64encode(data).decode(),
                mount_point=self.mount_point,
                **options,
            )
            stated = str(answer["data"]["signature"])
        except Exception as exc:  # hvac raises many types; none may leak secrets
            raise SignerError(
                f"vault: transit sign with {self.key_name!r} failed: {type(exc).__name__}"
            ) from None
        prefix, _, encoded = stated.rpartition(":")
        if not prefix.startswith("vault:v"):
            raise SignerError("vault: transit answered a signature in an unknown format")
        signature = base64.b64decode(encoded)
        if not verify_bytes(public, signature, data):
            raise SignerError("vault: transit signature does not verify with the key's public half")
        return signature


class KeylessSigner:
    """Sigstore keyless signing (sigstore-python): an OIDC token → Fulcio certificate → bundle.

    ``identity_token`` is a raw OIDC JWT (from ``SIGSTORE_ID_TOKEN`` or ambient CI credentials,
    see :meth:`ambient`); ``trust_config`` a ``ClientTrustConfig`` JSON file, or None for the
    public-good instance (fetched over TUF). Needs Fulcio and Rekor to be reachable.
    """

    def __init__(self, identity_token: str, trust_config: Path | None = None) -> None:
        from sigstore.oidc import IdentityError, IdentityToken

        try:
            self.token = IdentityToken(identity_token)
        except IdentityError as exc:
            raise SignerError(f"keyless: unusable OIDC token: {exc}") from None
        self.trust_config = trust_config

    @classmethod
    def ambient(cls, trust_config: Path | None = None) -> KeylessSigner:
        """A signer with the CI's ambient OIDC credentials (GitHub Actions, GCP…)."""
        from sigstore.oidc import IdentityError, detect_credential

        try:
            token = detect_credential()
        except IdentityError as exc:
            raise SignerError(f"keyless: ambient credential detection failed: {exc}") from None
        if token is None:
            raise SignerError("keyless: no OIDC token given and no ambient CI credential found")
        return cls(token, trust_config)

    @property
    def identity(self) -> str:
        """The token's identity and issuer, as Fulcio will certify them."""
        return f"{self.token.identity} ({self.token.issuer})"

    def sign_artifact(self, data: bytes) -> bytes:
        """A Sigstore bundle (JSON) over ``data``."""
        return self._sign(lambda signer: signer.sign_artifact(data))

    def sign_statement(self, statement: bytes) -> bytes:
        """A Sigstore bundle (JSON) holding a DSSE envelope over the in-toto ``statement``."""
        from sigstore.dsse import Statement

        return self._sign(lambda signer: signer.sign_dsse(Statement(statement)))

    def _sign(self, call: Any) -> bytes:
        from sigstore.models import ClientTrustConfig
        from sigstore.sign import SigningContext

        try:
            config = (
                ClientTrustConfig.from_json(self.trust_config.read_text())
                if self.trust_config
                else ClientTrustConfig.production()
            )
            context = SigningContext.from_trust_config(config)
            with context.signer(self.token, cache=True) as signer:
                bundle = call(signer)
        except Exception as exc:  # network, Fulcio, Rekor: report the type, never the token
            raise SignerError(f"keyless signing failed: {type(exc).__name__}: {exc}") from None
        text: str = bundle.to_json()
        json.loads(text)
        return text.encode()


PASSWORD_VARS = ("SUPPLYCHAIN_KEY_PASSWORD", "COSIGN_PASSWORD")
"""Environment variables the private key's password is read from, in order."""


def key_password() -> bytes | None:
    """The private key password from the environment (never from settings files or logs)."""
    for name in PASSWORD_VARS:
        value = os.environ.get(name)
        if value:
            return value.encode()
    return None


def signer_for(key: str) -> Signer:
    """A signer for ``key``: a private key file, or ``hashivault://NAME`` (Vault transit).

    Vault is reached at ``VAULT_ADDR`` with ``VAULT_TOKEN``; a key file's password comes from
    ``SUPPLYCHAIN_KEY_PASSWORD`` (or ``COSIGN_PASSWORD``).
    """
    if key.startswith("hashivault://"):
        import hvac

        client = hvac.Client(url=os.environ.get("VAULT_ADDR"), token=os.environ.get("VAULT_TOKEN"))
        return VaultTransitSigner(client, key.removeprefix("hashivault://"))
    return KeyFileSigner.from_file(Path(key), key_password())
