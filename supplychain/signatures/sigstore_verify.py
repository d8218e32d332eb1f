"""Offline verification of Sigstore bundles and of cosign's legacy keyless signatures.

Everything is checked against a trusted root: sigstore-python's embedded public-good root
(read offline, no TUF refresh) or a ``trusted_root.json`` in the protobuf-specs format for a
private Sigstore. Nothing is fetched: no URL from a bundle or trust root is ever contacted.

Certificate-signed bundles (v0.1-v0.3, message signature or DSSE) go through
sigstore-python's :class:`~sigstore.verify.Verifier`. Key-signed bundles, which
sigstore-python 4.x does not verify, are checked here with the same sigstore-python log-entry
verification (Merkle inclusion proof, signed checkpoint, SET) and ``cryptography``.
Cosign's legacy ``.sig`` annotations (certificate, chain, Rekor bundle) cannot become a
sigstore-python bundle (it requires an inclusion proof, which they lack), so their
certificate chain, SET and Rekor entry are checked here with helpers from :mod:`._checks`
(signer identity: :mod:`._identity`).

Besides its public API this module relies on a few sigstore-python 4.5 internals (log-entry
and SCT verification, keyring lookup, ``Verifier`` hooks); pin ``sigstore>=4.5,<4.6``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import (
    Bundle,
    ClientTrustConfig,
    TransparencyLogEntry,
    TrustedRoot,
    VerificationMaterial,
)
from sigstore_models.bundle.v1 import Bundle as BundleMessage
from sigstore_models.common.v1 import HashAlgorithm

from supplychain.signatures._checks import (
    ConformantVerifier,
    rekor_body_mismatch,
    verified_chain,
    verifier_der,
    verify_rekor_set,
    verify_rfc3161,
)
from supplychain.signatures._identity import (
    CertificateIdentityPolicy,
    IdentityPolicy,
    signer_identity,
)

__all__ = [
    "IdentityPolicy",
    "SigstoreResult",
    "SigstoreVerifyError",
    "verify_bundle",
    "verify_cosign_keyless",
]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class SigstoreResult:
    """Outcome of one Sigstore verification; a failure is a result, never an exception."""

    verified: bool
    """True only when every check passed."""
    reason: str
    """Why it failed, or what was verified; safe to record and show."""
    signer: str | None
    """``"identity (issuer)"`` for a certificate, ``"key sha256:<hex>"`` for a key, else None."""
    payload_type: str | None = None
    """The DSSE payload type, when the bundle held a verified DSSE envelope."""
    payload: bytes | None = None
    """The verified DSSE payload (e.g. an in-toto statement), when there was one."""
    signed_at: datetime | None = None
    """The earliest verified signing time (Rekor integrated time or RFC 3161 timestamp)."""


class SigstoreVerifyError(Exception):
    """Inputs that cannot be used at all (unreadable or malformed trust root, bad digest)."""


def _fail(reason: str) -> SigstoreResult:
    return SigstoreResult(verified=False, reason=reason, signer=None)


def load_trusted_root(path: Path | None) -> TrustedRoot:
    """The trust root at ``path``, or sigstore-python's embedded public-good root (offline)."""
    try:
        if path is None:
            return ClientTrustConfig.production(offline=True).trusted_root
        return TrustedRoot.from_file(str(path))
    except (OSError, ValueError, SigstoreError) as exc:
        raise SigstoreVerifyError(f"unusable Sigstore trusted root: {exc}") from exc


def _parse_sha256(artifact: bytes | None, artifact_digest: str | None) -> bytes | None:
    """The artifact's SHA-256 as bytes, from the artifact or a ``sha256:<hex>`` digest."""
    if artifact is not None:
        computed = hashlib.sha256(artifact).digest()
        if artifact_digest is not None and not hmac.compare_digest(
            computed, _parse_sha256(None, artifact_digest) or b""
        ):
            raise SigstoreVerifyError("artifact and artifact_digest disagree")
        return computed
    if artifact_digest is None:
        return None
    algorithm, _, hex_digest = artifact_digest.partition(":")
    try:
        raw = bytes.fromhex(hex_digest)
    except ValueError as exc:
        raise SigstoreVerifyError(f"malformed digest {artifact_digest!r}") from exc
    if algorithm != "sha256" or len(raw) != 32:
        raise SigstoreVerifyError(f"unsupported digest {artifact_digest!r}: sha256 only")
    return raw


def _statement_names(payload: bytes, digest: bytes) -> bool:
    """True when the in-toto statement has a subject with this SHA-256 digest."""
    try:
        statement = json.loads(payload)
        subjects = statement["subject"]
        wanted = digest.hex()
        return any(
            isinstance(s, dict)
            and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str)
            and hmac.compare_digest(s["digest"]["sha256"].lower().encode(), wanted.encode())
            for s in subjects
        )
    except (ValueError, KeyError, TypeError):
        return False


def verify_bundle(
    bundle_json: bytes,
    *,
    artifact: bytes | None = None,
    artifact_digest: str | None = None,
    policy: IdentityPolicy | None = None,
    public_key_pem: bytes | None = None,
    trusted_root: Path | None = None,
) -> SigstoreResult:
    """Verify a Sigstore bundle (v0.1-v0.3) offline.

    A certificate-signed bundle needs ``policy``; a key-signed bundle needs
    ``public_key_pem``. A message-signature bundle needs the artifact (or its
    ``sha256:`` digest); for a DSSE bundle the artifact, when given, must be a subject of the
    in-toto statement (for cosign 3 image signatures: the manifest digest). Without an
    artifact, a DSSE bundle is verified as such and the caller must check the returned
    payload (its subject and predicate type, e.g. ``https://sigstore.dev/cosign/sign/v1``).
    """
    root = load_trusted_root(trusted_root)
    digest = _parse_sha256(artifact, artifact_digest)
    try:
        message = BundleMessage.from_json(bundle_json)
    except ValueError as exc:
        return _fail(f"malformed bundle: {exc}")
    if message.verification_material.public_key is not None:
        if public_key_pem is None:
            return _fail("bundle is signed with a key but no public key was given")
        return _verify_key_bundle(message, root, digest, public_key_pem)
    if public_key_pem is not None:
        return _fail("a public key was given but the bundle is signed with a certificate")
    if policy is None:
        return _fail("bundle is signed with a certificate but no identity policy was given")
    try:
        bundle = Bundle(message)
    except (SigstoreError, ValueError) as exc:
        return _fail(f"invalid bundle: {exc}")
    return _verify_certificate_bundle(bundle, message, root, digest, policy)


def _verify_certificate_bundle(
    bundle: Bundle,
    message: BundleMessage,
    root: TrustedRoot,
    digest: bytes | None,
    policy: IdentityPolicy,
) -> SigstoreResult:
    try:
        verifier = ConformantVerifier(trusted_root=root)
        identity_check = CertificateIdentityPolicy(policy)
        if message.dsse_envelope is not None:
            payload_type, payload = verifier.verify_dsse(bundle, identity_check)
        else:
            if digest is None:
                return _fail("bundle holds a message signature but no artifact was given")
            verifier.verify_artifact(
                Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, identity_check
            )
            payload_type, payload = None, None
    except (SigstoreError, ValueError) as exc:
        return _fail(f"verification failed: {exc}")
    if payload is not None and digest is not None:
        if payload_type != INTOTO_PAYLOAD_TYPE or not _statement_names(payload, digest):
            return _fail("artifact is not a subject of the signed in-toto statement")
    signer = signer_identity(bundle.signing_certificate, policy)
    return SigstoreResult(
        verified=True,
        reason="sigstore bundle verified",
        signer=signer,
        payload_type=payload_type,
        payload=payload,
        signed_at=verifier.signed_at,
    )


def _key_id(spki_der: bytes) -> str:
    return "key sha256:" + hashlib.sha256(spki_der).hexdigest()


def _verify_key_bundle(
    message: BundleMessage, root: TrustedRoot, digest: bytes | None, public_key_pem: bytes
) -> SigstoreResult:
    """Verify a key-signed bundle: log entry (proof, checkpoint, SET), signature, entry body.

    The signing time comes from the Rekor inclusion promise; key-signed bundles that only
    carry RFC 3161 timestamps (Rekor v2) are rejected, as sigstore-python 4.x has no API to
    check them without a certificate.
    """
    spki = verifier_der(public_key_pem)
    if spki is None:
        raise SigstoreVerifyError("public_key_pem is not a PEM public key")
    key = serialization.load_der_public_key(spki)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return _fail("only ECDSA keys are supported for key-signed bundles")
    entries = message.verification_material.tlog_entries
    if len(entries) != 1:
        return _fail("bundle must hold exactly one transparency log entry")
    try:
        entry = TransparencyLogEntry(entries[0])
        if entry._inner.integrated_time is None or entry._inner.inclusion_promise is None:
            return _fail("key-signed bundle has no Rekor inclusion promise (signed time)")
        entry._verify(root.rekor_keyring(KeyringPurpose.VERIFY))
        # Like sigstore-python's Bundle: reject undecodable timestamps (they are not needed).
        _ = VerificationMaterial(message.verification_material).timestamp_verification_data
    except (SigstoreError, ValueError) as exc:
        return _fail(f"invalid log entry or timestamp: {exc}")
    body = entry._inner.canonicalized_body
    payload_type: str | None = None
    payload: bytes | None = None
    try:
        if message.dsse_envelope is not None:
            envelope = message.dsse_envelope
            if len(envelope.signatures) != 1:
                return _fail("DSSE envelope must hold exactly one signature")
            signature = envelope.signatures[0].sig
            payload_type, payload = envelope.payload_type, envelope.payload
            key.verify(signature, _pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
            mismatch = rekor_body_mismatch(
                body,
                signature=signature,
                sha256=hashlib.sha256(payload).digest(),
                verifier=spki,
                kind="dsse",
            )
        elif message.message_signature is not None:
            if digest is None:
                return _fail("bundle holds a message signature but no artifact was given")
            signature = message.message_signature.signature
            hinted = message.message_signature.message_digest
            if hinted is not None and not hmac.compare_digest(hinted.digest, digest):
                return _fail("bundle message digest does not match the artifact")
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            mismatch = rekor_body_mismatch(
                body, kind="hashedrekord", signature=signature, sha256=digest, verifier=spki
            )
        else:
            return _fail("bundle holds neither a message signature nor a DSSE envelope")
    except InvalidSignature:
        return _fail("signature does not verify with the given public key")
    if mismatch is not None:
        return _fail(mismatch)
    if payload is not None and digest is not None:
        if payload_type != INTOTO_PAYLOAD_TYPE or not _statement_names(payload, digest):
            return _fail("artifact is not a subject of the signed in-toto statement")
    return SigstoreResult(
        verified=True,
        reason="sigstore bundle verified with public key",
        signer=_key_id(spki),
        payload_type=payload_type,
        payload=payload,
        signed_at=datetime.fromtimestamp(entry._inner.integrated_time, tz=UTC),  # SET verified
    )


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify_cosign_keyless(
    payload: bytes,
    signature_b64: str,
    certificate_pem: bytes,
    chain_pem: bytes | None,
    rekor_bundle_json: bytes | None,
    rfc3161_timestamp: bytes | None,
    *,
    policy: IdentityPolicy,
    trusted_root: Path | None = None,
) -> SigstoreResult:
    """Verify one cosign legacy keyless signature (``.sig`` tag layer and its annotations).

    ``payload`` is the layer blob (the simple-signing JSON), ``signature_b64`` the
    ``dev.cosignproject.cosign/signature`` annotation, ``certificate_pem``/``chain_pem`` the
    ``dev.sigstore.cosign/certificate``/``chain`` annotations, ``rekor_bundle_json`` the
    ``dev.sigstore.cosign/bundle`` annotation and ``rfc3161_timestamp`` the DER
    TimeStampResponse from ``dev.sigstore.cosign/rfc3161timestamp`` (base64-decoded
    ``SignedRFC3161Timestamp``). The chain annotation only supplies untrusted intermediates:
    trust comes from the Fulcio CAs of the trusted root alone.
    """
    root = load_trusted_root(trusted_root)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        cert = x509.load_pem_x509_certificate(certificate_pem)
        intermediates = x509.load_pem_x509_certificates(chain_pem) if chain_pem else []
    except ValueError as exc:
        return _fail(f"malformed signature, certificate or chain: {exc}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return _fail("only ECDSA signing certificates are supported")
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return _fail("signature does not verify with the certificate's key")
    times: list[datetime] = []
    if rekor_bundle_json is not None:
        integrated = verify_rekor_set(rekor_bundle_json, root, payload, signature, cert)
        if isinstance(integrated, str):
            return _fail(integrated)
        times.append(integrated)
    if rfc3161_timestamp is not None:
        stamped = verify_rfc3161(rfc3161_timestamp, root, signature)
        if stamped is None:
            return _fail("RFC 3161 timestamp does not verify against a trusted TSA")
        times.append(stamped)
    if not times:
        if datetime.now(UTC) > cert.not_valid_after_utc:
            return _fail("expired certificate without a valid timestamp")
        return _fail("no Rekor SET or RFC 3161 timestamp: the signing time is unverified")
    for when in times:
        chain = verified_chain(cert, root, intermediates, when)
        if isinstance(chain, str):
            return _fail(chain)
    try:
        signer = signer_identity(cert, policy)
    except SigstoreError as exc:
        return _fail(str(exc))
    return SigstoreResult(
        verified=True,
        reason="cosign keyless signature verified",
        signer=signer,
        signed_at=min(times),
    )
