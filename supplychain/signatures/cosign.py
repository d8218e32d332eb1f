"""cosign's formats: the simple-signing payload and the ``.sig``/``.att`` tag manifests.

Payload (sigstore/sigstore ``pkg/signature/payload/payload.go``)::

    {"critical": {"identity": {"docker-reference": "host/repo"},
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "type": "cosign container image signature"},
     "optional": {…} | null}

It is checked over the stored bytes (never re-serialised). Storage (cosign ``pkg/oci/static``,
``specs/SIGNATURE_SPEC.md``, ``specs/ATTESTATION_SPEC.md``): the tag ``sha256-<hex>.sig`` (``.att``)
in the image's repository holds one OCI manifest with one layer per signature; a signature layer
is the payload (``application/vnd.dev.cosign.simplesigning.v1+json``) with the base64 signature in
the ``dev.cosignproject.cosign/signature`` annotation; an attestation layer is a DSSE envelope
(``application/vnd.dsse.envelope.v1+json``) with an empty signature annotation.

Issuing (:func:`sign_image`, :func:`attest_image`) stores in either or both schemes: the tags
above, or an OCI 1.1 referrer holding a Sigstore bundle v0.3 (cosign 3's format,
``specs/BUNDLE_SPEC.md``): a DSSE envelope over an in-toto statement, with predicate type
``https://sigstore.dev/cosign/sign/v1`` for a plain signature. Key-signed bundles name the key in
``verificationMaterial.publicKey.hint`` and carry no transparency-log entry (as ``cosign sign
--key … --tlog-upload=false``); keyless ones come whole from sigstore-python.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from supplychain.interface import ImageTarget, Verdict
from supplychain.signatures.dsse import sign_envelope
from supplychain.signatures.signer import KeylessSigner, Signer, SignerError
from supplychain.signatures.statements import (
    COSIGN_SIGN,
    CYCLONEDX,
    IN_TOTO_PAYLOAD_TYPE,
    VSA,
    VULN,
    EvidenceRef,
    sbom_statement,
    sha256_of,
    statement,
    vsa_statement,
    vuln_statement,
)
from supplychain.signatures.storage import SignatureStore

if TYPE_CHECKING:  # the pipeline imports the verifier side of this package
    from supplychain.stages.pipeline import Outcome

__all__ = [
    "ATTESTATION_SUFFIX",
    "CERTIFICATE_ANNOTATION",
    "CHAIN_ANNOTATION",
    "DSSE_TYPE",
    "MODES",
    "REKOR_BUNDLE_ANNOTATION",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_SUFFIX",
    "SIMPLESIGNING_TYPE",
    "TIMESTAMP_ANNOTATION",
    "PayloadClaims",
    "StorageMode",
    "attest_image",
    "build_payload",
    "check_payload",
    "issue_for_outcome",
    "key_bundle",
    "read_payload",
    "sign_image",
]

SIMPLESIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"
SIGNATURE_SUFFIX = "sig"
ATTESTATION_SUFFIX = "att"
PAYLOAD_TYPE = "cosign container image signature"
MAX_PAYLOAD = 64 * 1024
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
PREDICATE_ANNOTATION = "predicateType"

StorageMode = Literal["tag", "referrers", "both"]
"""Where issued signatures go: cosign's tags, OCI 1.1 referrers, or both."""
MODES: tuple[StorageMode, ...] = ("tag", "referrers", "both")


def build_payload(
    docker_reference: str, digest: str, annotations: Mapping[str, str] | None = None
) -> bytes:
    """The simple-signing payload for ``digest`` as cosign writes it (compact JSON)."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": dict(annotations) if annotations else None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PayloadClaims:
    """What a simple-signing payload claims."""

    docker_reference: str
    """``critical.identity.docker-reference``: the repository the signer meant."""
    digest: str
    """``critical.image.docker-manifest-digest``: the image signed."""
    optional: dict[str, object]
    """``optional`` annotations (empty when null)."""


def read_payload(payload: bytes) -> PayloadClaims:
    """Parse a simple-signing payload; raise ValueError when it is not one."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    try:
        document = json.loads(payload)
        critical = document["critical"]
        reference = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
        optional = document.get("optional") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("not a simple-signing payload") from None
    if not (isinstance(reference, str) and isinstance(digest, str) and isinstance(optional, dict)):
        raise ValueError("not a simple-signing payload")
    if kind != PAYLOAD_TYPE:
        raise ValueError(f"payload type {str(kind)[:80]!r} is not {PAYLOAD_TYPE!r}")
    return PayloadClaims(reference, digest, optional)


def check_payload(
    payload: bytes, digest: str, repository: str, allowed_references: frozenset[str] = frozenset()
) -> str | None:
    """Why a (signature-verified) payload does not sign ``digest`` in ``repository``, or None.

    ``repository`` is ``host/repo``; the payload's ``docker-reference`` must name it (with or
    without a tag, as cosign writes either) or be one of ``allowed_references`` (images copied
    between registries keep their original reference).
    """
    try:
        claims = read_payload(payload)
    except ValueError as exc:
        return str(exc)
    if not hmac.compare_digest(claims.digest.encode(), digest.encode()):
        return f"payload signs {claims.digest[:80]}, not this image"
    named = claims.docker_reference
    base = named.rsplit(":", 1)[0] if named.rfind(":") > named.rfind("/") else named
    if base != repository and base not in allowed_references:
        return f"payload names repository {named[:200]!r}, not {repository!r}"
    return None


def key_bundle(signer: Signer, statement_bytes: bytes) -> bytes:
    """A Sigstore bundle v0.3: a DSSE envelope over ``statement_bytes`` signed by ``signer``."""
    envelope = sign_envelope(signer, IN_TOTO_PAYLOAD_TYPE, statement_bytes)
    document = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": signer.key_id}, "tlogEntries": []},
        "dsseEnvelope": json.loads(envelope.to_json()),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _bundle(signer: Signer | KeylessSigner, statement_bytes: bytes) -> bytes:
    if isinstance(signer, KeylessSigner):
        return signer.sign_statement(statement_bytes)
    return key_bundle(signer, statement_bytes)


def _referrer(
    store: SignatureStore,
    target: ImageTarget,
    signer: Signer | KeylessSigner,
    statement_bytes: bytes,
    predicate_type: str,
) -> str:
    annotations = {
        BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
        BUNDLE_PREDICATE_ANNOTATION: predicate_type,
    }
    bundle = _bundle(signer, statement_bytes)
    return store.attach_referrer(target, BUNDLE_V03, bundle, BUNDLE_V03, annotations)


def sign_image(
    store: SignatureStore,
    target: ImageTarget,
    signer: Signer | KeylessSigner,
    *,
    mode: StorageMode = "tag",
    docker_reference: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Sign ``target`` and push the signature(s); the digests of the manifests written."""
    written: list[str] = []
    if mode in ("tag", "both"):
        if isinstance(signer, KeylessSigner):
            raise SignerError("keyless signatures are stored as referrers (bundles) only")
        reference = docker_reference or f"{target.registry}/{target.repository}"
        payload = build_payload(reference, target.digest, annotations)
        signature = base64.b64encode(signer.sign(payload)).decode()
        layer_notes = {SIGNATURE_ANNOTATION: signature}
        written.append(
            store.attach_to_tag(target, SIGNATURE_SUFFIX, payload, SIMPLESIGNING_TYPE, layer_notes)
        )
    if mode in ("referrers", "both"):
        claim = statement(target, COSIGN_SIGN, dict(annotations or {}))
        written.append(_referrer(store, target, signer, claim, COSIGN_SIGN))
    return tuple(written)


def attest_image(
    store: SignatureStore,
    target: ImageTarget,
    signer: Signer | KeylessSigner,
    statement_bytes: bytes,
    predicate_type: str,
    *,
    mode: StorageMode = "tag",
) -> tuple[str, ...]:
    """Push an attestation of ``statement_bytes`` (an in-toto statement about ``target``)."""
    written: list[str] = []
    if mode in ("tag", "both"):
        if isinstance(signer, KeylessSigner):
            raise SignerError("keyless attestations are stored as referrers (bundles) only")
        envelope = sign_envelope(signer, IN_TOTO_PAYLOAD_TYPE, statement_bytes)
        notes = {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: predicate_type}
        written.append(
            store.attach_to_tag(target, ATTESTATION_SUFFIX, envelope.to_json(), DSSE_TYPE, notes)
        )
    if mode in ("referrers", "both"):
        written.append(_referrer(store, target, signer, statement_bytes, predicate_type))
    return tuple(written)


def issue_for_outcome(
    store: SignatureStore,
    outcome: Outcome,
    verdict: Verdict,
    signer: Signer | KeylessSigner,
    *,
    mode: StorageMode = "tag",
    verifier_id: str = "https://github.com/supplychain/supplychain",
) -> tuple[str, ...]:
    """After a recorded verdict: a VSA for it; on allow also a signature, SBOM and vuln scan.

    ``verdict`` is the one decision on the recorded facts (the gate's answer for this digest).
    The VSA names the policy digest, the Trivy DB and the evidence used (digests of the SBOM and
    scan statements, of the Trivy DB file and of every verified signature or attestation).
    """
    target = outcome.target
    claims: list[tuple[bytes, str]] = []
    written: list[str] = []
    if verdict.decision == "allow":
        written += sign_image(store, target, signer, mode=mode)
        claims += [(sbom_statement(target, outcome.sbom), CYCLONEDX)]
        claims += [(vuln_statement(target, outcome.scan), VULN)]
    evidence = [EvidenceRef(f"in-toto:{kind}", sha256_of(claim)) for claim, kind in claims]
    if outcome.scan.db_digest:
        evidence.append(EvidenceRef("trivy-db:trivy.db", outcome.scan.db_digest))
    evidence += [EvidenceRef(s.reference, s.digest) for s in outcome.signatures if s.verified]
    db_version = outcome.scan.db_updated_at.isoformat() if outcome.scan.db_updated_at else None
    vsa = vsa_statement(
        target,
        verdict,
        verifier_id=verifier_id,
        trivy_db_version=db_version,
        evidence=tuple(evidence),
    )
    for claim, kind in [*claims, (vsa, VSA)]:
        written += attest_image(store, target, signer, claim, kind, mode=mode)
    return tuple(written)
