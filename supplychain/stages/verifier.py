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
``reason`` starts with the predicate type followed by ``": "``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
from supplychain.signatures.storage import SignatureStore, StorageError, tag_for

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


@dataclass(frozen=True)
class _Found:
    """One fetched signature or attestation blob, before checking."""

    kind: str
    """Evidence kind (see the module doc)."""
    reference: str
    """Where it was found."""
    digest: str
    """Digest of the blob (a verified layer)."""
    blob: bytes
    """The blob's bytes."""


_Check = Callable[[ImageTarget, _Found, dict[str, Any]], SignatureEvidence]


class SignatureVerifier(Verifier):
    """Finds and checks cosign signatures, attestations and Sigstore bundles (module doc)."""

    def __init__(self, client: RegistryClient, trust: TrustPolicy) -> None:
        self.store = SignatureStore(client)
        self.trust = trust

    def verify(self, image: PulledImage) -> tuple[SignatureEvidence, ...]:
        return self.verify_target(image.target, image.manifest)

    def verify_target(self, target: ImageTarget, manifest: bytes) -> tuple[SignatureEvidence, ...]:
        """Check everything stored for ``target`` whose manifest bytes are ``manifest``."""
        found: list[SignatureEvidence] = []
        try:
            found += self._tag(target, cosign.SIGNATURE_SUFFIX, self._simple_signing)
            found += self._tag(target, cosign.ATTESTATION_SUFFIX, self._attestation_layer)
            for referrer in self.store.referrers(target):
                where = f"{target.registry}/{target.repository}@{referrer.manifest.digest}"
                for layer in referrer.layers:
                    if str(layer.get("mediaType", "")) in BUNDLE_TYPES:
                        item = self._read(target, "sigstore-bundle", where, layer)
                        found.append(
                            item
                            if isinstance(item, SignatureEvidence)
                            else self._bundle(target, manifest, item)
                        )
        except StorageError as exc:
            raise VerifyError(f"looking up signatures of {target.pinned}: {exc}") from None
        return tuple(found)

    # -- lookup -----------------------------------------------------------------------------

    def _tag(self, target: ImageTarget, suffix: str, check: _Check) -> list[SignatureEvidence]:
        stored = self.store.tag_layers(target, suffix)
        if stored is None:
            return []
        manifest, layers = stored
        tag = tag_for(target.digest, suffix)
        where = f"{target.registry}/{target.repository}:{tag}@{manifest.digest}"
        results: list[SignatureEvidence] = []
        kind = "cosign-tag" if suffix == cosign.SIGNATURE_SUFFIX else "attestation:att-tag"
        for layer in layers:
            item = self._read(target, kind, where, layer)
            found = item if isinstance(item, SignatureEvidence) else check(target, item, layer)
            results.append(found)
        return results

    def _read(
        self, target: ImageTarget, kind: str, where: str, layer: dict[str, Any]
    ) -> _Found | SignatureEvidence:
        """The layer's bytes, or evidence that it could not be fetched (kept as a failure)."""
        digest = str(layer.get("digest", ""))[:80]
        try:
            return _Found(kind, where, digest, self.store.read_layer(target, layer))
        except StorageError as exc:
            return SignatureEvidence(kind, where, digest, False, f"not fetched: {exc}")

    # -- checks -----------------------------------------------------------------------------

    def _simple_signing(
        self, target: ImageTarget, item: _Found, layer: dict[str, Any]
    ) -> SignatureEvidence:
        if layer.get("mediaType") != cosign.SIMPLESIGNING_TYPE:
            return _result(item, False, f"layer type {str(layer.get('mediaType'))[:80]} ignored")
        notes = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        assert isinstance(notes, dict)  # noqa: S101 - narrowed above
        signature = str(notes.get(cosign.SIGNATURE_ANNOTATION) or "")
        if not signature:
            return _result(item, False, "layer carries no signature annotation")
        certificate = notes.get(cosign.CERTIFICATE_ANNOTATION)
        if certificate:
            signer, why = self._keyless(item.blob, signature, notes)
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
        return _result(item, True, f"verified: {why}", signer)

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
    ) -> tuple[str | None, str]:
        if not self.trust.identities:
            return None, "certificate-signed, not verified: no identity policy configured"

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
                return result.signer or "certificate", result.reason
            reasons.append(result.reason)
        return None, "; ".join(reasons)[:1000] or "certificate does not verify"

    def _attestation_layer(
        self, target: ImageTarget, item: _Found, layer: dict[str, Any]
    ) -> SignatureEvidence:
        if layer.get("mediaType") != cosign.DSSE_TYPE:
            return _result(item, False, f"layer type {str(layer.get('mediaType'))[:80]} ignored")
        try:
            envelope = Envelope.from_json(item.blob)
        except DsseError as exc:
            return _result(item, False, f"malformed envelope: {exc}")
        notes = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        assert isinstance(notes, dict)  # noqa: S101 - narrowed above
        if notes.get(cosign.CERTIFICATE_ANNOTATION):
            message = pae(envelope.payload_type, envelope.payload)
            signature = base64.b64encode(envelope.signatures[0][1]).decode()
            signer, why = self._keyless(message, signature, notes)
        else:
            signer, why = self._envelope_with_keys(envelope)
        return self._statement(target, item, envelope.payload_type, envelope.payload, signer, why)

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
        item: _Found,
        payload_type: str | None,
        payload: bytes | None,
        signer: str | None,
        why: str,
    ) -> SignatureEvidence:
        """Signature checked (``signer`` set); now subject digest, then predicate type."""
        attestation = item.kind.replace("sigstore-bundle", "attestation:referrer")
        try:
            statement = read_statement(payload or b"")
        except ValueError:
            statement = None
        predicate = statement.predicate_type if statement else "unknown"
        kind = "sigstore-bundle" if predicate == COSIGN_SIGN else attestation
        labelled = _Found(kind, item.reference, item.digest, item.blob)
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
        return _result(labelled, True, prefix + f"verified: {why}", signer, ptype)

    def _bundle(self, target: ImageTarget, manifest: bytes, item: _Found) -> SignatureEvidence:
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
        self, target: ImageTarget, manifest: bytes, item: _Found, bundle: dict[str, Any]
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
        self, target: ImageTarget, manifest: bytes, item: _Found, is_dsse: bool
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
                return _result(item, True, f"verified: {result.reason}", result.signer)
            return self._statement(
                target, item, result.payload_type, result.payload, result.signer, result.reason
            )
        return _result(item, False, "; ".join(reasons)[:1000] or "bundle does not verify")


def _result(
    item: _Found,
    verified: bool,
    reason: str,
    signer: str | None = None,
    predicate_type: str | None = None,
) -> SignatureEvidence:
    return SignatureEvidence(
        item.kind, item.reference, item.digest, verified, reason, signer, item.blob, predicate_type
    )
