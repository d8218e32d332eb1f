"""Signing keys: generation, PEM import/export, cosign's encrypted key file, sign and verify.

Supported keys are those cosign accepts: ECDSA P-256 and P-384, Ed25519 and RSA (2048 bits or
more). Signatures follow cosign's key-pair scheme (sigstore/sigstore ``pkg/signature``): ECDSA
as ASN.1 DER over SHA-256 (cosign 2's ``LoadSignerVerifier(key, crypto.SHA256)``), RSA
PKCS#1 v1.5 over SHA-256, Ed25519 over the message itself. Verification of a P-384 signature also
accepts SHA-384, the curve's default in sigstore's algorithm registry.

cosign's private key file (cosign ``pkg/cosign/keys.go`` with go-securesystemslib ``encrypted``):
PEM of type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (legacy ``ENCRYPTED COSIGN PRIVATE KEY``) whose
body is the JSON ``{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"}, "cipher":
{"name": "nacl/secretbox", "nonce"}, "ciphertext"}``; the 32-byte key is scrypt(password, salt),
the plaintext PKCS#8 DER. NaCl's secretbox (XSalsa20-Poly1305) is not in ``cryptography``: it
comes from PyNaCl. Private keys never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Literal

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

__all__ = [
    "COSIGN_PEM_TYPES",
    "KeyFileError",
    "KeyKind",
    "PrivateKey",
    "PublicKey",
    "encrypt_private_key",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_pem",
    "sign_bytes",
    "verify_bytes",
]

KeyKind = Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

COSIGN_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
"""PEM types of cosign's encrypted private key file: current, then legacy."""
SCRYPT_N = 65536
"""cosign's scrypt cost (go-securesystemslib ``encrypted``, "standard": N=2^16, r=8, p=1)."""
SCRYPT_PARAMS = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
"""The only (N, r, p) go-securesystemslib accepts (legacy, standard, OWASP): no DoS by params."""
MIN_RSA_BITS = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1)


class KeyFileError(Exception):
    """A key could not be generated, read, decrypted or used; never holds key material."""


def generate_key(kind: KeyKind = "ecdsa-p256") -> PrivateKey:
    """A new private key of ``kind`` (cosign's default is ECDSA P-256)."""
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyFileError(f"unsupported key kind {kind!r}")


def _check(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise KeyFileError(f"unsupported elliptic curve {key.curve.name}")
    elif isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"RSA key of {key.key_size} bits is under {MIN_RSA_BITS}")
    elif not isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        raise KeyFileError(f"unsupported key type {type(key).__name__}")


def load_public_key(pem: bytes) -> PublicKey:
    """A PKIX ``PUBLIC KEY`` PEM (as ``cosign.pub``) of a supported type."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError("not a PEM public key") from None
    _check(key)
    assert isinstance(key, PublicKey)  # noqa: S101 - _check narrowed it
    return key


def load_private_key(pem: bytes, password: bytes | None) -> PrivateKey:
    """Read cosign's encrypted key file, or a PEM key (PKCS#8, SEC1, PKCS#1; encrypted or not)."""
    text = pem.strip()
    for pem_type in COSIGN_PEM_TYPES:
        if text.startswith(f"-----BEGIN {pem_type}-----".encode()):
            return _decrypt_cosign(_pem_body(text, pem_type), password or b"")
    try:
        key = serialization.load_pem_private_key(text, password or None)
    except TypeError:
        raise KeyFileError("the private key is encrypted: a password is needed") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError("not a readable private key (or wrong password)") from None
    _check(key)
    assert isinstance(key, PrivateKey)  # noqa: S101 - _check narrowed it
    return key


def encrypt_private_key(key: PrivateKey, password: bytes) -> bytes:
    """cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM of ``key`` under ``password``."""
    if not password:
        raise KeyFileError("refusing to write a private key without a password")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt(password, salt, SCRYPT_N, 8, 1))
    ciphertext = box.encrypt(der, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    body = base64.encodebytes(json.dumps(document).encode()).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem_type = COSIGN_PEM_TYPES[0].encode()
    return b"\n".join(
        [b"-----BEGIN " + pem_type + b"-----", *lines, b"-----END " + pem_type + b"-----", b""]
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    """The PKIX ``PUBLIC KEY`` PEM of ``key`` (what ``cosign.pub`` holds)."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: PrivateKey | PublicKey) -> str:
    """``sha256:<hex>`` of the public key's DER SubjectPublicKeyInfo: a stable signer id."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """cosign's signature of ``data`` with ``key`` (raw bytes; cosign stores them base64)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with ``key``."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
            if isinstance(key.curve, ec.SECP384R1):
                algorithms.append(hashes.SHA384())
            for algorithm in algorithms:
                try:
                    key.verify(signature, data, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _pem_body(text: bytes, pem_type: str) -> bytes:
    begin, end = f"-----BEGIN {pem_type}-----".encode(), f"-----END {pem_type}-----".encode()
    inner = text[len(begin) :].split(end, 1)
    if len(inner) != 2:
        raise KeyFileError(f"unterminated {pem_type} PEM block")
    try:
        return base64.b64decode(b"".join(inner[0].split()), validate=True)
    except ValueError:
        raise KeyFileError(f"malformed {pem_type} PEM block") from None


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _decrypt_cosign(body: bytes, password: bytes) -> PrivateKey:
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise KeyFileError("malformed cosign key file") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise KeyFileError("cosign key file: only scrypt + nacl/secretbox are supported")
    if (n, r, p) not in SCRYPT_PARAMS:
        raise KeyFileError("cosign key file: unsupported scrypt parameters")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError("cosign key file: bad nonce length")
    try:
        der = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p)).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError("cosign key file: wrong password or corrupted key") from None
    try:
        key = serialization.load_der_private_key(der, None)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError("cosign key file: decrypted key is not PKCS#8") from None
    _check(key)
    assert isinstance(key, PrivateKey)  # noqa: S101 - _check narrowed it
    return key
