"""Keys, DSSE, statements and signers, without a registry.

The cosign key file is checked against the format cosign publishes (go-securesystemslib
``encrypted``: scrypt + NaCl secretbox over PKCS#8) by decrypting it here with hashlib and PyNaCl
directly, not through our loader. Vault is not installable here (no Debian package, no PyPI
binary), so :class:`FakeVaultTransit` stands in for its transit HTTP API, driven by the real hvac
client; Fulcio is unreachable, so keyless signing is only tested up to what runs offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hvac
import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from supplychain.interface import ImageTarget, ScanResult, Verdict
from supplychain.signatures import (
    KeyFileError,
    KeyFileSigner,
    KeylessSigner,
    SignerError,
    VaultTransitSigner,
    encrypt_private_key,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
)
from supplychain.signatures.dsse import DsseError, Envelope, pae, sign_envelope, verify_envelope
from supplychain.signatures.keys import KeyKind, sign_bytes, verify_bytes
from supplychain.signatures.statements import (
    VSA,
    VULN,
    EvidenceRef,
    read_statement,
    vsa_statement,
    vuln_statement,
)

KINDS: tuple[KeyKind, ...] = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")
TARGET = ImageTarget("127.0.0.1:5000", "team/app", "sha256:" + "ab" * 32)


def test_pae_matches_the_dsse_spec_test_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_cosign_key_file_round_trip_and_format(kind: KeyKind) -> None:
    key = generate_key(kind)
    pem = encrypt_private_key(key, b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert b"PRIVATE KEY-----\n" in pem and b"s3cret" not in pem
    loaded = load_private_key(pem, b"s3cret")
    assert key_id(loaded) == key_id(key)
    # Independent decryption from cosign's published format, not through our loader.
    body = b"".join(pem.strip().splitlines()[1:-1])
    document = json.loads(base64.b64decode(body))
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert document["cipher"]["name"] == "nacl/secretbox"
    salt = base64.b64decode(document["kdf"]["salt"])
    secret = hashlib.scrypt(b"s3cret", salt=salt, n=65536, r=8, p=1, maxmem=2**28, dklen=32)
    der = nacl.secret.SecretBox(secret).decrypt(
        base64.b64decode(document["ciphertext"]), base64.b64decode(document["cipher"]["nonce"])
    )
    assert key_id(serialization.load_der_private_key(der, None)) == key_id(key)  # type: ignore[arg-type]


def test_cosign_key_file_refuses_wrong_password_empty_password_and_odd_scrypt_params() -> None:
    key = generate_key()
    pem = encrypt_private_key(key, b"right")
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(pem, b"wrong")
    with pytest.raises(KeyFileError, match="without a password"):
        encrypt_private_key(key, b"")
    body = json.loads(base64.b64decode(b"".join(pem.strip().splitlines()[1:-1])))
    body["kdf"]["params"]["N"] = 1 << 30  # a DoS attempt: refused before any work
    tampered = (
        b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"
        + base64.b64encode(json.dumps(body).encode())
        + b"\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFileError, match="scrypt parameters"):
        load_private_key(tampered, b"right")


@pytest.mark.parametrize("kind", KINDS)
def test_pem_keys_of_each_type_import_sign_and_verify(kind: KeyKind) -> None:
    key = generate_key(kind)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(KeyFileError, match="password is needed"):
        load_private_key(pem, None)
    signer = KeyFileSigner(load_private_key(pem, b"pw"))
    public = load_public_key(public_pem(key))
    signature = signer.sign(b"payload")
    assert verify_bytes(public, signature, b"payload")
    assert not verify_bytes(public, signature, b"payloaD")
    assert "PRIVATE" not in repr(signer) and signer.key_id == key_id(public)


def test_unsupported_keys_are_refused() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(KeyFileError, match="curve"):
        load_public_key(public_pem(p521))


def test_cosign_ecdsa_signature_is_der_over_sha256() -> None:
    key = generate_key("ecdsa-p384")
    signature = sign_bytes(key, b"data")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))


def test_dsse_envelope_sign_verify_and_tamper() -> None:
    signer = KeyFileSigner(generate_key("ed25519"))
    other = KeyFileSigner(generate_key("ed25519"))
    envelope = sign_envelope(signer, "application/vnd.in-toto+json", b'{"a":1}')
    parsed = Envelope.from_json(envelope.to_json())
    verified = verify_envelope(parsed, {signer.key_id: signer.public_key})
    assert (verified.payload, verified.signer) == (b'{"a":1}', signer.key_id)
    # Independent check: the signature covers PAE(type, payload), per the DSSE protocol.
    assert isinstance(signer.public_key, ed25519.Ed25519PublicKey)
    signer.public_key.verify(
        parsed.signatures[0][1], b'DSSEv1 28 application/vnd.in-toto+json 7 {"a":1}'
    )
    with pytest.raises(DsseError, match="no signature verifies"):
        verify_envelope(parsed, {other.key_id: other.public_key})
    retyped = Envelope("text/plain", parsed.payload, parsed.signatures)
    with pytest.raises(DsseError):
        verify_envelope(retyped, {signer.key_id: signer.public_key})


def test_vsa_names_policy_digest_trivy_db_and_evidence() -> None:
    verdict = Verdict("allow", ("ok",), "default", "sha256:" + "cd" * 32, datetime.now(UTC))
    evidence = (EvidenceRef("trivy-db:trivy.db", "sha256:" + "ef" * 32),)
    statement = read_statement(
        vsa_statement(
            TARGET, verdict, verifier_id="x", trivy_db_version="2026-11-01", evidence=evidence
        )
    )
    assert statement.predicate_type == VSA and TARGET.digest in statement.subject_digests
    predicate: Any = statement.predicate
    assert predicate["policy"]["digest"] == {"sha256": "cd" * 32}
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["verifier"]["version"]["trivy-db"] == "2026-11-01"
    assert predicate["inputAttestations"] == [
        {"uri": "trivy-db:trivy.db", "digest": {"sha256": "ef" * 32}}
    ]
    denied = Verdict("deny", ("CVE",), "default", "sha256:" + "cd" * 32)
    text = vsa_statement(TARGET, denied, verifier_id="x", trivy_db_version=None, evidence=())
    assert json.loads(text)["predicate"]["verificationResult"] == "FAILED"


def test_vuln_statement_carries_the_trivy_report() -> None:
    report = {"SchemaVersion": 2, "Results": []}
    scan = ScanResult("Trivy", "0.76.0", None, None, (), json.dumps(report).encode())
    statement = read_statement(vuln_statement(TARGET, scan))
    predicate: Any = statement.predicate
    assert statement.predicate_type == VULN
    assert predicate["scanner"]["result"] == report
    assert predicate["scanner"]["version"] == "0.76.0"


class FakeVaultTransit:
    """FAKE HashiCorp Vault (not installable here): the transit ``keys`` and ``sign`` endpoints
    only, backed by a real ECDSA P-256 key, answering as Vault's API documentation states."""

    def __init__(self, token: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.token = token
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.headers.get("X-Vault-Token") != fake.token:
                    return self._answer(403, {"errors": ["permission denied"]})
                pem = public_pem(fake.key).decode()
                keys = {"1": {"name": "P-256", "public_key": pem}}
                data = {"type": "ecdsa-p256", "latest_version": 1, "keys": keys}
                return self._answer(200, {"data": data})

            def do_POST(self) -> None:
                if self.headers.get("X-Vault-Token") != fake.token:
                    return self._answer(403, {"errors": ["permission denied"]})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert body["hash_algorithm"] == "sha2-256"
                assert body["marshaling_algorithm"] == "asn1"
                raw = fake.key.sign(base64.b64decode(body["input"]), ec.ECDSA(hashes.SHA256()))
                signature = "vault:v1:" + base64.b64encode(raw).decode()
                return self._answer(200, {"data": {"signature": signature, "key_version": 1}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_vault() -> Iterator[FakeVaultTransit]:
    vault = FakeVaultTransit("vault-test-token")
    yield vault
    vault.server.shutdown()


def test_vault_transit_signer_signs_verifiably_through_hvac(fake_vault: FakeVaultTransit) -> None:
    signer = VaultTransitSigner(hvac.Client(url=fake_vault.url, token=fake_vault.token), "cosign")
    assert signer.key_id == key_id(fake_vault.key)
    signature = signer.sign(b"payload")
    fake_vault.key.public_key().verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))
    refused = VaultTransitSigner(hvac.Client(url=fake_vault.url, token="wrong-token"), "cosign")
    with pytest.raises(SignerError, match="vault") as info:
        refused.sign(b"payload")
    assert "wrong-token" not in str(info.value)


def test_keyless_signer_refuses_a_malformed_token_offline() -> None:
    with pytest.raises(SignerError, match="OIDC token"):
        KeylessSigner("not-a-jwt")


def test_keyless_signer_without_token_or_ambient_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_URL", "GOOGLE_SERVICE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SignerError, match="no OIDC token"):
        KeylessSigner.ambient()
