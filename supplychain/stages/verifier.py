"""The pipeline's verifier: finds an image's signatures and attestations and checks each one.

Looked up: cosign's ``sha256-<hex>.sig`` tag (simple-signing layers), its ``.att`` tag (DSSE
envelopes) and OCI 1.1 referrers holding Sigstore bundles (referrers API, else the fallback tag).
Each is checked in this order, stopping at the first failure: the signature (a trusted key, or a
certificate matching an identity policy via :mod:`supplychain.signatures.sigstore_verify`), then
that what it signs is this image (simple-signing ``docker-manifest-digest`` and
``docker-reference``, or the in-toto subject digest), and only then what it says (predicate
type). Everything found is returned whole with the result and reason; only ``verified`` evidence
may be used by policy. A lookup failure raises :class:`~supplychain.interface.VerifyError`.

Evidence ``kind``: ``cosign-tag`` (``.sig`` signature), ``sigstore-bundle`` (a referrer bundle
signing the image), ``attestation:att-tag`` and ``attestation:referrer``; for attestations the
``reason`` starts with the predicate type followed by ``": "`` (except evidence that was not
read: over a cap of :mod:`supplychain.stages.sigfetch`, or not fetched).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from supplychain.interface import (
    ImageTarget,
    PulledImage,
    SignatureEvidence,
    Verifier,
    VerifyError,
)
from supplychain.registry import RegistryClient
from supplychain.signatures import cosign
from supplychain.signatures.dsse import DsseError, Envelope, pae, verify_envelope
from supplychain.signatures.keys import PublicKey, key_id, load_public_key, verify_bytes
from supplychain.signatures.sigstore_verify import (
    IdentityPolicy,
    SigstoreVerifyError,
    verify_bundle,
    verify_cosign_keyless,
)
from supplychain.signatures.statements import COSIGN_SIGN, KNOWN_PREDICATES, read_statement
from supplychain.signatures.storage import MAX_REFERRERS, SignatureStore, StorageError, tag_for
from supplychain.stages.sigfetch import Fetches, Found, unverified

__all__ = ["BUNDLE_TYPES", "SignatureVerifier", "TrustPolicy"]

BUNDLE_TYPES = (
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
)
"""Media types of Sigstore bundles (v0.1 to v0.3) as layers or artifact types."""


@dataclass(frozen=True)
class TrustPolicy:
    """Whom we trust and what we accept."""

    keys: Mapping[str, PublicKey] = field(default_factory=dict)
    """Trusted public keys by key id (:func:`supplychain.signatures.keys.key_id`)."""
    identities: tuple[IdentityPolicy, ...] = ()
    """Certificate identity policies; a certificate must match one of them."""
    allowed_references: frozenset[str] = frozenset()
    """``host/repo`` names a payload may name besides the image's own repository."""
    require_known_predicates: bool = False
    """Record attestations of predicate types outside the known set as failed."""
    trusted_root: Path | None = None
    """Sigstore ``trusted_root.json`` for certificate checks (None: sigstore_verify's default)."""

    @classmethod
    def from_key_files(cls, paths: Iterable[Path], **options: Any) -> TrustPolicy:
        """Trust the PEM public keys in ``paths``; raise :class:`.keys.KeyFileError` or OSError."""
        keys: dict[str, PublicKey] = {}
        for path in paths:
            key = load_public_key(path.read_bytes())
            keys[key_id(key)] = key
        return cls(keys=keys, **options)


class SignatureVerifier(Verifier):
    """Finds and checks cosign signatures, attestations and Sigstore bundles (module doc)."""

    def __init__(self, client: RegistryClient, trust: TrustPolicy) -> None:
        self.store = SignatureStore(client)
        self.trust = trust

    def verify(self, image: PulledImage) -> tuple[SignatureEvidence, ...]:
        return self.verify_target(image.target, image.manifest)

    def verify_target(self, target: ImageTarget, manifest: bytes) -> tuple[SignatureEvidence, ...]:
        """Check everything stored for ``target`` whose manifest bytes are ``manifest``.

        Reads go through one :class:`~supplychain.stages.sigfetch.Fetches`: each blob once,
        within the caps on signatures and payload bytes.
        """
        fetches = Fetches(self.store, target)
        found: list[SignatureEvidence] = []
        try:
            for suffix, kind, check in (
                (cosign.SIGNATURE_SUFFIX, "cosign-tag", self._simple_signing),
                (cosign.ATTESTATION_SUFFIX, "attestation:att-tag", self._attestation_layer),
            ):
                stored = self.store.tag_layers(target, suffix)
                if stored is not None:
                    tag = tag_for(target.digest, suffix)
                    where = f"{target.registry}/{target.repository}:{tag}@{stored[0].digest}"
                    found += fetches.check_layers(
                        kind, where, stored[1], functools.partial(check, target)
                    )
            found += self._referrers(target, manifest, fetches)
        except StorageError as exc:
            raise VerifyError(f"looking up signatures of {target.pinned}: {exc}") from None
        return tuple(found)

    def _referrers(
        self, target: ImageTarget, manifest: bytes, fetches: Fetches
    ) -> list[SignatureEvidence]:
        listed, via = self.store.referrer_listing(target)
        found: list[SignatureEvidence] = []
        if len(listed) > MAX_REFERRERS:
            where = f"{target.registry}/{target.repository} ({via})"
            reason = f"{len(listed) - MAX_REFERRERS} more referrers not checked: over the cap"
            found.append(unverified("sigstore-bundle", where, "", f"{reason} of {MAX_REFERRERS}"))
        for entry in listed[:MAX_REFERRERS]:
            if fetches.full:
                break
            referrer = self.store.fetch_referrer(target, entry, via)
            if referrer is None:
                continue
            where = f"{target.registry}/{target.repository}@{referrer.manifest.digest}"
            bundles = [x for x in referrer.layers if str(x.get("mediaType", "")) in BUNDLE_TYPES]
            found += fetches.check_layers(
                "sigstore-bundle",
                where,
                bundles,
                lambda item, _: self._bundle(target, manifest, item),
            )
        return found

    # -- checks -----------------------------------------------------------------------------

    def _simple_signing(
        self, target: ImageTarget, item: Found, layer: dict[str, Any]
    ) -> SignatureEvidence:
        if layer.get("mediaType") != cosign.SIMPLESIGNING_TYPE:
            return _result(item, False, f"layer type {str(layer.get('mediaType'))[:80]} ignored")
        notes = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        assert isinstance(notes, dict)  # noqa: S101 - narrowed above
        signature = str(notes.get(cosign.SIGNATURE_ANNOTATION) or "")
        if not signature:
            return _result(item, False, "layer carries no signature annotation")
        certificate = notes.get(cosign.CERTIFICATE_ANNOTATION)
        signed_at: datetime | None = None
        if certificate:
            signer, why, signed_at = self._keyless(item.blob, signature, notes)
        else:
            signer, why = self._with_keys(item.blob, signature)
        if signer is None:
            return _result(item, False, why)
        problem = cosign.check_payload(
            item.blob,
            target.digest,
            f"{target.registry}/{target.repository}",
            self.trust.allowed_references,
        )
        if problem:
            return _result(item, False, f"signature valid but {problem}", signer)
        return _result(item, True, f"verified: {why}", signer, signed_at=signed_at)

    def _with_keys(self, message: bytes, signature_b64: str) -> tuple[str | None, str]:
        if not self.trust.keys:
            return None, "signature present, not verified: no trusted key configured"
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            return None, "signature annotation is not base64"
        for name, key in self.trust.keys.items():
            if verify_bytes(key, signature, message):
                return name, f"signature verifies with key {name}"
        return None, "signature does not verify with any trusted key"

    def _keyless(
        self, message: bytes, signature_b64: str, notes: Mapping[str, Any]
    ) -> tuple[str | None, str, datetime | None]:
        """(signer, why, verified signing time) of a certificate-signed cosign layer."""
        if not self.trust.identities:
            return None, "certificate-signed, not verified: no identity policy configured", None

        def note(name: str) -> bytes | None:
            value = notes.get(name)
            return value.encode() if isinstance(value, str) and value else None

        reasons: list[str] = []
        for policy in self.trust.identities:
            try:
                result = verify_cosign_keyless(
                    message,
                    signature_b64,
                    note(cosign.CERTIFICATE_ANNOTATION) or b"",
                    note(cosign.CHAIN_ANNOTATION),
                    note(cosign.REKOR_BUNDLE_ANNOTATION),
                    note(cosign.TIMESTAMP_ANNOTATION),
                    policy=policy,
                    trusted_root=self.trust.trusted_root,
                )
            except SigstoreVerifyError as exc:
                reasons.append(str(exc))
                continue
            if result.verified:
                return result.signer or "certificate", result.reason, result.signed_at
            reasons.append(result.reason)
        return None, "; ".join(reasons)[:1000] or "certificate does not verify", None

    def _attestation_layer(
        self, target: ImageTarget, item: Found, layer: dict[str, Any]
    ) -> SignatureEvidence:
        if layer.get("mediaType") != cosign.DSSE_TYPE:
            return _result(item, False, f"layer type {str(layer.get('mediaType'))[:80]} ignored")
        try:
            envelope = Envelope.from_json(item.blob)
        except DsseError as exc:
            return _result(item, False, f"malformed envelope: {exc}")
        notes = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        assert isinstance(notes, dict)  # noqa: S101 - narrowed above
        signed_at: datetime | None = None  # a key-signed envelope states no verified time
        if notes.get(cosign.CERTIFICATE_ANNOTATION):
            message = pae(envelope.payload_type, envelope.payload)
            signature = base64.b64encode(envelope.signatures[0][1]).decode()
            signer, why, signed_at = self._keyless(message, signature, notes)
        else:
            signer, why = self._envelope_with_keys(envelope)
        return self._statement(
            target, item, envelope.payload_type, envelope.payload, signer, why, signed_at
        )

    def _envelope_with_keys(self, envelope: Envelope) -> tuple[str | None, str]:
        if not self.trust.keys:
            return None, "envelope present, not verified: no trusted key configured"
        try:
            verified = verify_envelope(envelope, self.trust.keys)
        except DsseError as exc:
            return None, str(exc)
        return verified.signer, f"envelope verifies with key {verified.signer}"

    def _statement(
        self,
        target: ImageTarget,
        item: Found,
        payload_type: str | None,
        payload: bytes | None,
        signer: str | None,
        why: str,
        signed_at: datetime | None = None,
    ) -> SignatureEvidence:
        """Signature checked (``signer`` set); now subject digest, then predicate type."""
        attestation = item.kind.replace("sigstore-bundle", "attestation:referrer")
        try:
            statement = read_statement(payload or b"")
        except ValueError:
            statement = None
        predicate = statement.predicate_type if statement else "unknown"
        kind = "sigstore-bundle" if predicate == COSIGN_SIGN else attestation
        labelled = Found(kind, item.reference, item.digest, item.blob)
        prefix = "" if kind == "sigstore-bundle" else f"{predicate[:200]}: "
        ptype = None if kind == "sigstore-bundle" else predicate[:512]
        if signer is None:
            return _result(labelled, False, prefix + why, None, ptype)
        if payload_type != "application/vnd.in-toto+json" or statement is None:
            reason = prefix + "signed payload is not an in-toto statement"
            return _result(labelled, False, reason, signer, ptype)
        if not any(
            hmac.compare_digest(target.digest.encode(), d.encode())
            for d in statement.subject_digests
        ):
            reason = prefix + "statement subject is not this image"
            return _result(labelled, False, reason, signer, ptype)
        if self.trust.require_known_predicates and predicate not in KNOWN_PREDICATES:
            return _result(labelled, False, prefix + "unknown predicate type", signer, ptype)
        return _result(labelled, True, prefix + f"verified: {why}", signer, ptype, signed_at)

    def _bundle(self, target: ImageTarget, manifest: bytes, item: Found) -> SignatureEvidence:
        try:
            bundle = json.loads(item.blob)
            material = bundle["verificationMaterial"]
        except (ValueError, KeyError, TypeError):
            return _result(item, False, "malformed Sigstore bundle")
        if not isinstance(material, dict) or not isinstance(bundle, dict):
            return _result(item, False, "malformed Sigstore bundle")
        if "publicKey" in material:
            if "dsseEnvelope" not in bundle:
                return self._message_with_keys(target, manifest, item, bundle)
            try:
                envelope = Envelope.from_json(bundle["dsseEnvelope"])
            except DsseError as exc:
                return _result(item, False, f"malformed envelope: {exc}")
            signer, why = self._envelope_with_keys(envelope)
            return self._statement(
                target, item, envelope.payload_type, envelope.payload, signer, why
            )
        return self._bundle_keyless(target, manifest, item, "dsseEnvelope" in bundle)

    def _message_with_keys(
        self, target: ImageTarget, manifest: bytes, item: Found, bundle: dict[str, Any]
    ) -> SignatureEvidence:
        try:
            signature = base64.b64decode(bundle["messageSignature"]["signature"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            return _result(
                item, False, "bundle has neither a DSSE envelope nor a message signature"
            )
        for name, key in self.trust.keys.items():
            if verify_bytes(key, signature, manifest):
                return _result(item, True, f"verified: signs the image manifest ({name})", name)
        return _result(item, False, "message signature does not verify with any trusted key")

    def _bundle_keyless(
        self, target: ImageTarget, manifest: bytes, item: Found, is_dsse: bool
    ) -> SignatureEvidence:
        if not self.trust.identities:
            return _result(item, False, "certificate-signed, not verified: no identity policy")
        reasons: list[str] = []
        for policy in self.trust.identities:
            try:
                result = verify_bundle(
                    item.blob,
                    artifact=None if is_dsse else manifest,
                    policy=policy,
                    trusted_root=self.trust.trusted_root,
                )
            except SigstoreVerifyError as exc:
                reasons.append(str(exc))
                continue
            if not result.verified:
                reasons.append(result.reason)
                continue
            if not is_dsse:
                reason = f"verified: {result.reason}"
                return _result(item, True, reason, result.signer, signed_at=result.signed_at)
            return self._statement(
                target,
                item,
                result.payload_type,
                result.payload,
                result.signer,
                result.reason,
                result.signed_at,
            )
        return _result(item, False, "; ".join(reasons)[:1000] or "bundle does not verify")


def _result(
    item: Found,
    verified: bool,
    reason: str,
    signer: str | None = None,
    predicate_type: str | None = None,
    signed_at: datetime | None = None,
) -> SignatureEvidence:
    return SignatureEvidence(
        item.kind,
        item.reference,
        item.digest,
        verified,
        reason,
        signer,
        item.blob,
        predicate_type,
        signed_at if verified else None,  # only a verified signature's time is a fact
    )
