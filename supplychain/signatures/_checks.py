"""Checks shared by the Sigstore verifiers: the verifying key, Rekor entry bodies, X.509 chains.

Signer identity (cosign's ``--certificate-*`` flags) is checked in :mod:`._identity`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as X509VerificationError,
)
from rfc3161_client import TimeStampResponse, VerifierBuilder, decode_timestamp_response
from rfc3161_client import VerificationError as Rfc3161VerificationError
from sigstore import dsse
from sigstore._internal.sct import verify_sct
from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import KeyID
from sigstore.errors import Error as SigstoreError
from sigstore.errors import MetadataError, VerificationError
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import VerificationPolicy


def verifier_der(pem: bytes) -> bytes | None:
    """DER of a PEM certificate, or the SubjectPublicKeyInfo DER of a PEM public key."""
    try:
        if b"CERTIFICATE" in pem:
            return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        return None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _same_verifier(pem_b64: Any, expected_der: bytes) -> bool:
    if not isinstance(pem_b64, str):
        return False
    try:
        found = verifier_der(base64.b64decode(pem_b64, validate=True))
    except binascii.Error:
        return False
    return found is not None and hmac.compare_digest(found, expected_der)


def _same_b64(value: Any, expected: bytes) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return hmac.compare_digest(base64.b64decode(value, validate=True), expected)
    except binascii.Error:
        return False


def _same_hex(value: Any, expected: bytes) -> bool:
    return isinstance(value, str) and hmac.compare_digest(
        value.lower().encode(), expected.hex().encode()
    )


_ENTRY_VERSIONS = {"hashedrekord": "0.0.1", "dsse": "0.0.1", "intoto": "0.0.2"}


def _entry_parts(kind: str, spec: Any) -> tuple[Any, list[tuple[Any, Any]]]:
    """The recorded digest and (signature, verifier) pairs of a Rekor v1 entry spec."""
    if kind == "hashedrekord":
        sig = spec["signature"]
        return spec["data"]["hash"], [(sig["content"], sig["publicKey"]["content"])]
    if kind == "dsse":
        return spec["payloadHash"], [(s["signature"], s["verifier"]) for s in spec["signatures"]]
    # intoto/0.0.2 stores each DSSE signature base64-encoded twice.
    content = spec["content"]
    return content["payloadHash"], [
        (_unwrap_b64(s["sig"]), s["publicKey"]) for s in content["envelope"]["signatures"]
    ]


def _unwrap_b64(value: Any) -> str:
    """The base64 text inside a base64 string, or "" (which matches nothing)."""
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        return ""


def rekor_body_mismatch(
    body: bytes, *, kind: str, signature: bytes, sha256: bytes, verifier: bytes
) -> str | None:
    """Why a Rekor v1 entry body does not record this signature, or None when it does.

    ``body`` is the log entry's canonicalized body (authenticated by the SET or inclusion
    proof) and must be of ``kind``: hashedrekord/0.0.1 (``sha256`` is the artifact's digest),
    dsse/0.0.1 or intoto/0.0.2 (``sha256`` is the DSSE payload's digest); ``verifier`` is the
    certificate DER or the key's SPKI DER.
    """
    try:
        entry = json.loads(body)
        found, version = entry["kind"], entry["apiVersion"]
        if found != kind or version != _ENTRY_VERSIONS.get(kind):
            return f"unexpected Rekor entry type {found}/{version}"
        digest, signatures = _entry_parts(kind, entry["spec"])
    except (ValueError, KeyError, TypeError):
        return "malformed Rekor entry body"
    if digest.get("algorithm") != "sha256" or not _same_hex(digest.get("value"), sha256):
        return "Rekor entry records a different artifact digest"
    if len(signatures) != 1 or not _same_b64(signatures[0][0], signature):
        return "Rekor entry records a different signature"
    if not _same_verifier(signatures[0][1], verifier):
        return "Rekor entry records a different certificate or key"
    return None


def verified_chain(
    cert: x509.Certificate,
    root: TrustedRoot,
    intermediates: list[x509.Certificate],
    when: datetime,
) -> list[x509.Certificate] | str:
    """The issuer chain making ``cert`` a valid Fulcio signing leaf at ``when``, or why not.

    Same profile as sigstore-python: WebPKI rules except that the leaf carries the
    code-signing EKU instead of client-auth, and must allow digital signatures. When the
    trust root lists CT logs, the certificate's embedded SCT must verify with one of them.
    """
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        return f"certificate was not valid at the signing time {when.isoformat()}"
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(root.get_fulcio_certs()))
        .time(when)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(cert, intermediates).chain[1:]
    except (X509VerificationError, x509.UnsupportedGeneralNameType) as exc:
        return f"certificate does not chain to a trusted Fulcio CA: {exc}"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "certificate lacks key usage or extended key usage"
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        return "certificate is not a code-signing certificate"
    try:
        ct_keyring = root.ct_keyring(KeyringPurpose.VERIFY)
    except MetadataError:
        return chain  # a private Sigstore without a CT log
    try:
        verify_sct(cert, chain, ct_keyring)
    except (VerificationError, ValueError) as exc:
        return f"certificate has no valid SCT from a trusted CT log: {exc}"
    return chain


class ConformantVerifier(Verifier):
    """sigstore-python 4.5.1's ``Verifier`` with two gaps closed, per the conformance suite.

    * Rekor v1 ``intoto/0.0.2`` entries for DSSE bundles are accepted (as by cosign and
      sigstore-go): the integrated time counts once its SET verifies, and the entry body
      must record this envelope's payload digest, signature and certificate.
    * A trust root's TSA ``validFor.end`` is inclusive (protobuf-specs ``TimeRange`` is a
      closed interval); sigstore-python compares it exclusively.
    """

    def _verify_signed_timestamp(
        self, timestamp_response: TimeStampResponse, message: bytes
    ) -> TimestampVerificationResult | None:
        for authority in self._trusted_root.get_timestamp_authorities():
            certificates = authority.certificates(allow_expired=True)
            if len(certificates) < 2:
                continue
            builder = (
                VerifierBuilder()
                .tsa_certificate(certificates[0])
                .add_root_certificate(certificates[-1])
            )
            for certificate in certificates[1:-1]:
                builder = builder.add_intermediate_certificate(certificate)
            try:
                builder.build().verify_message(timestamp_response, message)
            except Rfc3161VerificationError:
                continue
            when = timestamp_response.tst_info.gen_time
            end = authority.validity_period_end
            if authority.validity_period_start <= when and (end is None or when <= end):
                return TimestampVerificationResult(
                    source=TimestampSource.TIMESTAMP_AUTHORITY, time=when
                )
        return None

    established: tuple[datetime, ...] = ()
    """The verified signing times of the last bundle checked (the base class checks the
    certificate's validity at each of them); :attr:`signed_at` is the earliest."""

    @property
    def signed_at(self) -> datetime | None:
        """The earliest verified signing time of the last bundle checked."""
        return min(self.established) if self.established else None

    def _establish_time(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        times = self._times(bundle)
        self.established = tuple(t.time for t in times)
        return times

    def _times(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        entry = bundle.log_entry._inner
        if (entry.kind_version.kind, entry.kind_version.version) != ("intoto", "0.0.2"):
            return super()._establish_time(bundle)
        times: list[TimestampVerificationResult] = []
        if bundle.verification_material.timestamp_verification_data:
            if not self._trusted_root.get_timestamp_authorities():
                raise VerificationError("bundle has signed timestamps but no TSA is trusted")
            times.extend(self._verify_timestamp_authority(bundle))
        if entry.integrated_time and entry.inclusion_promise:
            # The SET binding this time is verified with the log entry.
            when = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
            times.append(
                TimestampVerificationResult(source=TimestampSource.TRANSPARENCY_SERVICE, time=when)
            )
        return times

    def verify_dsse(self, bundle: Bundle, policy: VerificationPolicy) -> tuple[str, bytes]:
        entry = bundle.log_entry._inner
        if entry.kind_version.kind != "intoto":
            return super().verify_dsse(bundle, policy)
        self._verify_common_signing_cert(bundle, policy)
        envelope = bundle._dsse_envelope
        key = bundle.signing_certificate.public_key()
        if envelope is None or not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError("intoto entries need a DSSE envelope and an ECDSA key")
        dsse._verify(key, envelope)
        payload_type, payload = envelope._inner.payload_type, envelope._inner.payload
        mismatch = rekor_body_mismatch(
            entry.canonicalized_body,
            kind="intoto",
            signature=envelope.signature,
            sha256=hashlib.sha256(payload).digest(),
            verifier=bundle.signing_certificate.public_bytes(serialization.Encoding.DER),
        )
        if mismatch is not None:
            raise VerificationError(mismatch)
        return payload_type, payload


def verify_rekor_set(
    bundle_json: bytes,
    root: TrustedRoot,
    payload: bytes,
    signature: bytes,
    cert: x509.Certificate,
) -> datetime | str:
    """The integrated time of a verified cosign Rekor bundle, or why it does not verify.

    The SET is the log's signature over the RFC 8785 canonical JSON of ``Payload`` (cosign
    ``VerifySET``); the entry body must be the hashedrekord of this payload, signature and
    certificate.
    """
    try:
        document = json.loads(bundle_json)
        entry = document["Payload"]
        body_b64, integrated = entry["body"], entry["integratedTime"]
        log_id, log_index = entry["logID"], entry["logIndex"]
        set_signature = base64.b64decode(document["SignedEntryTimestamp"], validate=True)
        body = base64.b64decode(body_b64, validate=True)
        key_id = bytes.fromhex(log_id)
        if not all(isinstance(v, int) and v >= 0 for v in (integrated, log_index)):
            raise ValueError("integratedTime and logIndex must be non-negative integers")
        canonical = rfc8785.dumps(
            {"body": body_b64, "integratedTime": integrated, "logID": log_id, "logIndex": log_index}
        )
    except (ValueError, KeyError, TypeError, rfc8785.CanonicalizationError) as exc:
        return f"malformed Rekor bundle: {exc}"
    try:
        root.rekor_keyring(KeyringPurpose.VERIFY).verify(
            key_id=KeyID(key_id), signature=set_signature, data=canonical
        )
    except SigstoreError:
        return "Rekor SET does not verify with any trusted transparency log key"
    mismatch = rekor_body_mismatch(
        body,
        kind="hashedrekord",
        signature=signature,
        sha256=hashlib.sha256(payload).digest(),
        verifier=cert.public_bytes(serialization.Encoding.DER),
    )
    if mismatch is not None:
        return mismatch
    return datetime.fromtimestamp(integrated, tz=UTC)


def verify_rfc3161(response: bytes, root: TrustedRoot, signature: bytes) -> datetime | None:
    """The time of an RFC 3161 timestamp over ``signature`` from a trusted TSA, or None."""
    try:
        decoded = decode_timestamp_response(response)
    except ValueError:
        return None
    result = ConformantVerifier(trusted_root=root)._verify_signed_timestamp(decoded, signature)
    return None if result is None else result.time
