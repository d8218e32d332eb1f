"""cosign legacy keyless signatures, verified offline against a PRIVATE Sigstore.

Fulcio and Rekor are unreachable here, so the test stands up its own Sigstore instead: a
``FakeFulcio`` certificate authority issuing short-lived code-signing certificates with the
Fulcio identity extensions, and a ``FakeRekor`` log key signing Signed Entry Timestamps over
real hashedrekord entries. Both are written into a ``trusted_root.json`` in the
protobuf-specs format. Nothing in the verifier is mocked: this is a real verification
(X.509 path building, ECDSA, RFC 8785 canonical JSON, Rekor entry matching) against a
private root, exactly as for a private Sigstore deployment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from supplychain.signatures.sigstore_verify import (
    IdentityPolicy,
    SigstoreResult,
    SigstoreVerifyError,
    verify_cosign_keyless,
)

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
DIGEST = "sha256:" + "ab" * 32
PAYLOAD = json.dumps(
    {
        "critical": {
            "identity": {"docker-reference": "registry.example/acme/app"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
).encode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _ca_builder(
    name: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    """A self-signed root CA certificate, valid from a month ago for a year."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


class FakeFulcio:
    """A stand-in for Fulcio (unreachable here): a root CA issuing 10-minute signing certs."""

    def __init__(self, name: str = "fake-fulcio") -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = _ca_builder(subject, self.key.public_key(), now).sign(self.key, hashes.SHA384())

    def issue(self, key: ec.EllipticCurvePrivateKey, not_before: datetime) -> x509.Certificate:
        """A Fulcio-style certificate for the workflow IDENTITY from ISSUER."""
        start = not_before
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(minutes=10))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(IDENTITY)]),
                critical=True,
            )
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), ISSUER.encode()
                ),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), _der_utf8(ISSUER)
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA384())
        )


class FakeRekor:
    """A stand-in for Rekor (unreachable here): a log key signing cosign bundle SETs.

    The same kind of key stands in for a CT log in the trust root."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(_spki(self.key.public_key())).digest()

    def bundle(
        self,
        payload: bytes,
        signature: bytes,
        cert: x509.Certificate,
        integrated: datetime,
    ) -> bytes:
        """cosign's ``dev.sigstore.cosign/bundle`` annotation for a hashedrekord entry."""
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        body: dict[str, Any] = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}
                },
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(cert_pem)}},
            },
        }
        entry: dict[str, Any] = {
            "body": _b64(rfc8785.dumps(body)),
            "integratedTime": int(integrated.timestamp()),
            "logIndex": 42,
            "logID": self.log_id.hex(),
        }
        set_signature = self.key.sign(rfc8785.dumps(entry), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"SignedEntryTimestamp": _b64(set_signature), "Payload": entry}).encode()


class FakeTSA:
    """A stand-in for a Sigstore timestamp authority, answering with the real ``openssl ts``."""

    CONFIG = (
        "[ tsa ]\ndefault_tsa = fake\n[ fake ]\nserial = {dir}/serial\n"
        "default_policy = 1.2.3.4.1\ndigests = sha256\nsigner_digest = sha256\n"
        "ess_cert_id_alg = sha256\ncrypto_device = builtin\n"
    )

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        root_key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-tsa-root")])
        now = datetime.now(UTC)
        self.root = _ca_builder(name, root_key.public_key(), now).sign(root_key, hashes.SHA384())
        key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-tsa")]))
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
            )
            .sign(root_key, hashes.SHA384())
        )
        (directory / "tsa.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        (directory / "root.pem").write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        (directory / "tsa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (directory / "serial").write_text("01\n")
        (directory / "tsa.cnf").write_text(self.CONFIG.format(dir=directory))

    def timestamp(self, data: bytes) -> bytes:
        """A DER TimeStampResponse over ``data``, as cosign stores from a TSA."""
        (self.dir / "data.bin").write_bytes(data)
        self._openssl("-query", "-data", "data.bin", "-sha256", "-cert", "-out", "req.tsq")
        self._openssl(
            *("-reply", "-queryfile", "req.tsq", "-signer", "tsa.pem", "-inkey", "tsa.key"),
            *("-chain", "root.pem", "-config", "tsa.cnf", "-out", "resp.tsr"),
        )
        return (self.dir / "resp.tsr").read_bytes()

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", "ts", *args], cwd=self.dir, check=True, capture_output=True)


def _tlog(log: FakeRekor, start: str) -> dict[str, Any]:
    return {
        "baseUrl": "https://log.invalid",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": _b64(_spki(log.key.public_key())),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": start},
        },
        "logId": {"keyId": _b64(log.log_id)},
    }


def write_trusted_root(
    path: Path,
    fulcio: FakeFulcio,
    rekor: FakeRekor,
    tsa: FakeTSA | None = None,
    ct_log: FakeRekor | None = None,
) -> Path:
    """A protobuf-specs ``trusted_root.json`` trusting exactly this private Sigstore."""
    start = "2020-01-01T00:00:00Z"
    document: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [_tlog(rekor, start)],
        "certificateAuthorities": [
            {
                "subject": {"organization": "test", "commonName": "fake-fulcio"},
                "uri": "https://fulcio.invalid",
                "certChain": {
                    "certificates": [
                        {"rawBytes": _b64(fulcio.cert.public_bytes(serialization.Encoding.DER))}
                    ]
                },
                "validFor": {"start": start},
            }
        ],
        "ctlogs": [],
        "timestampAuthorities": [],
    }
    if ct_log is not None:
        document["ctlogs"] = [_tlog(ct_log, start)]
    if tsa is not None:
        chain = [tsa.cert, tsa.root]
        document["timestampAuthorities"] = [
            {
                "subject": {"organization": "test", "commonName": "fake-tsa"},
                "uri": "https://tsa.invalid",
                "certChain": {
                    "certificates": [
                        {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                        for c in chain
                    ]
                },
                "validFor": {"start": start},
            }
        ]
    path.write_text(json.dumps(document))
    return path


@dataclass
class Signed:
    """One cosign keyless signature and its annotations."""

    payload: bytes
    signature_b64: str
    cert_pem: bytes
    rekor_bundle: bytes | None


@dataclass
class PrivateSigstore:
    """The private instance: fake Fulcio, fake Rekor, fake TSA and the root trusting them."""

    fulcio: FakeFulcio
    rekor: FakeRekor
    tsa: FakeTSA
    root: Path

    def sign(
        self,
        payload: bytes = PAYLOAD,
        *,
        not_before: datetime | None = None,
        integrated: datetime | None = None,
        log: FakeRekor | None = None,
        fulcio: FakeFulcio | None = None,
    ) -> Signed:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(minutes=1)
        cert = (fulcio or self.fulcio).issue(key, start)
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        when = integrated or cert.not_valid_before_utc + timedelta(seconds=30)
        bundle = (log or self.rekor).bundle(payload, signature, cert, when)
        return Signed(
            payload, _b64(signature), cert.public_bytes(serialization.Encoding.PEM), bundle
        )

    def verify(
        self,
        signed: Signed,
        policy: IdentityPolicy | None = None,
        *,
        timestamp: bytes | None = None,
        root: Path | None = None,
    ) -> SigstoreResult:
        return verify_cosign_keyless(
            signed.payload,
            signed.signature_b64,
            signed.cert_pem,
            None,
            signed.rekor_bundle,
            timestamp,
            policy=policy or IdentityPolicy(identity=IDENTITY, issuer=ISSUER),
            trusted_root=root or self.root,
        )


@pytest.fixture(scope="module")
def sigstore(tmp_path_factory: pytest.TempPathFactory) -> PrivateSigstore:
    return private_sigstore(tmp_path_factory)


def private_sigstore(tmp_path_factory: pytest.TempPathFactory) -> PrivateSigstore:
    """A fresh private Sigstore whose trusted root is under ``tmp_path_factory``."""
    fulcio, rekor = FakeFulcio(), FakeRekor()
    tsa = FakeTSA(tmp_path_factory.mktemp("tsa"))
    root_path = tmp_path_factory.mktemp("root") / "trusted_root.json"
    return PrivateSigstore(fulcio, rekor, tsa, write_trusted_root(root_path, fulcio, rekor, tsa))


def test_valid_signature_names_its_signer(sigstore: PrivateSigstore) -> None:
    result = sigstore.verify(sigstore.sign())
    assert result.verified, result.reason
    assert result.signer == f"{IDENTITY} ({ISSUER})"


def test_identity_and_issuer_regexps_match(sigstore: PrivateSigstore) -> None:
    policy = IdentityPolicy(
        identity_regexp=r"https://github\.com/acme/.+@refs/heads/main",
        issuer_regexp=r"https://token\.actions\.githubusercontent\.com",
    )
    assert sigstore.verify(sigstore.sign(), policy).verified


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            IdentityPolicy(identity="https://github.com/evil/app", issuer=ISSUER),
            "identity mismatch",
        ),
        (
            IdentityPolicy(identity=IDENTITY, issuer="https://accounts.google.com"),
            "issuer mismatch",
        ),
        # Regexps match the whole value: a prefix pattern does not accept a longer identity.
        (IdentityPolicy(identity_regexp=r"https://github\.com/acme", issuer=ISSUER), "identity"),
        (IdentityPolicy(identity=IDENTITY, issuer_regexp=r"https://gitlab\.com"), "issuer"),
    ],
)
def test_identity_or_issuer_mismatch_fails_with_reason(
    sigstore: PrivateSigstore, policy: IdentityPolicy, expected: str
) -> None:
    result = sigstore.verify(sigstore.sign(), policy)
    assert not result.verified
    assert expected in result.reason
    assert result.signer is None


def test_expired_certificate_verifies_with_set_inside_its_validity(
    sigstore: PrivateSigstore,
) -> None:
    """Fulcio certificates expire after minutes: the Rekor SET proves signing time."""
    signed = sigstore.sign(not_before=datetime.now(UTC) - timedelta(hours=2))
    result = sigstore.verify(signed)
    assert result.verified, result.reason


def test_expired_certificate_without_timestamp_fails(sigstore: PrivateSigstore) -> None:
    signed = sigstore.sign(not_before=datetime.now(UTC) - timedelta(hours=2))
    signed.rekor_bundle = None
    result = sigstore.verify(signed)
    assert not result.verified
    assert result.reason == "expired certificate without a valid timestamp"


def test_valid_certificate_without_timestamp_fails_closed(sigstore: PrivateSigstore) -> None:
    signed = sigstore.sign()
    signed.rekor_bundle = None
    result = sigstore.verify(signed)
    assert not result.verified
    assert "signing time is unverified" in result.reason


def test_set_from_unknown_log_fails(sigstore: PrivateSigstore) -> None:
    result = sigstore.verify(sigstore.sign(log=FakeRekor()))
    assert not result.verified
    assert "SET does not verify" in result.reason


def test_set_time_outside_certificate_validity_fails(sigstore: PrivateSigstore) -> None:
    late = datetime.now(UTC) + timedelta(hours=1)
    result = sigstore.verify(sigstore.sign(integrated=late))
    assert not result.verified
    assert "not valid at the signing time" in result.reason


def test_tampered_payload_fails(sigstore: PrivateSigstore) -> None:
    signed = sigstore.sign()
    signed.payload = signed.payload.replace(b"ab", b"cd")
    result = sigstore.verify(signed)
    assert not result.verified
    assert "signature does not verify" in result.reason


def test_rekor_entry_for_another_signature_fails(sigstore: PrivateSigstore) -> None:
    """A genuine SET for a different signature cannot vouch for this one."""
    signed, other = sigstore.sign(), sigstore.sign()
    signed.rekor_bundle = other.rekor_bundle
    result = sigstore.verify(signed)
    assert not result.verified
    assert "Rekor entry records a different" in result.reason


def test_certificate_from_untrusted_ca_fails(sigstore: PrivateSigstore) -> None:
    result = sigstore.verify(sigstore.sign(fulcio=FakeFulcio("rogue-ca")))
    assert not result.verified
    assert "does not chain to a trusted Fulcio CA" in result.reason


def test_public_good_root_does_not_trust_private_ca(sigstore: PrivateSigstore) -> None:
    signed = sigstore.sign()
    result = verify_cosign_keyless(
        signed.payload,
        signed.signature_b64,
        signed.cert_pem,
        None,
        signed.rekor_bundle,
        None,
        policy=IdentityPolicy(identity=IDENTITY, issuer=ISSUER),
    )
    assert not result.verified


def test_unreadable_trust_root_is_an_error(sigstore: PrivateSigstore, tmp_path: Path) -> None:
    bad = tmp_path / "trusted_root.json"
    bad.write_text("{not json")
    with pytest.raises(SigstoreVerifyError):
        sigstore.verify(sigstore.sign(), root=bad)


@pytest.mark.parametrize(
    "fields",
    [{"identity": IDENTITY}, {"issuer": ISSUER}, {"identity": IDENTITY, "issuer_regexp": "("}],
)
def test_identity_policy_needs_identity_and_issuer(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        IdentityPolicy(**fields)


def test_rfc3161_timestamp_from_trusted_tsa_proves_signing_time(
    sigstore: PrivateSigstore,
) -> None:
    signed = sigstore.sign()
    signed.rekor_bundle = None
    stamp = sigstore.tsa.timestamp(base64.b64decode(signed.signature_b64))
    result = sigstore.verify(signed, timestamp=stamp)
    assert result.verified, result.reason


def test_rfc3161_timestamp_over_another_signature_fails(sigstore: PrivateSigstore) -> None:
    signed = sigstore.sign()
    signed.rekor_bundle = None
    stamp = sigstore.tsa.timestamp(b"some other signature")
    result = sigstore.verify(signed, timestamp=stamp)
    assert not result.verified
    assert "RFC 3161 timestamp does not verify" in result.reason


def test_rfc3161_timestamp_from_untrusted_tsa_fails(
    sigstore: PrivateSigstore, tmp_path: Path
) -> None:
    """The same genuine timestamp fails under a root that does not list this TSA."""
    root = write_trusted_root(tmp_path / "trusted_root.json", sigstore.fulcio, sigstore.rekor)
    signed = sigstore.sign()
    signed.rekor_bundle = None
    stamp = sigstore.tsa.timestamp(base64.b64decode(signed.signature_b64))
    assert sigstore.verify(signed, timestamp=stamp).verified
    result = sigstore.verify(signed, timestamp=stamp, root=root)
    assert not result.verified
    assert "RFC 3161 timestamp does not verify" in result.reason


def test_root_with_ct_log_requires_an_sct(sigstore: PrivateSigstore, tmp_path: Path) -> None:
    """Like cosign, a certificate without an SCT fails once the root lists a CT log."""
    root = write_trusted_root(
        tmp_path / "trusted_root.json", sigstore.fulcio, sigstore.rekor, ct_log=FakeRekor()
    )
    result = sigstore.verify(sigstore.sign(), root=root)
    assert not result.verified
    assert "no valid SCT" in result.reason
