"""Signature discovery by cosign's tag scheme: ``<repo>:sha256-<hex>.sig``.

This stage finds what an image carries and stores it whole. A signature counts as verified only
when checked against a configured key or identity; with none configured, it is recorded as present
and unverified, and the policy treats it as no signature.
"""

from __future__ import annotations

import json

from supplychain.interface import PulledImage, SignatureEvidence, Verifier, VerifyError
from supplychain.registry import NotFoundError, RegistryClient, RegistryError

__all__ = ["SIMPLESIGNING_TYPE", "CosignTagVerifier", "signature_tag"]

SIMPLESIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
MAX_PAYLOAD = 64 * 1024
MAX_LAYERS = 64


def signature_tag(digest: str) -> str:
    """cosign's tag for the signatures of ``digest``: ``sha256-<hex>.sig``."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}.sig"


class CosignTagVerifier(Verifier):
    """Finds cosign signatures stored under the ``.sig`` tag of the image's repository."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def verify(self, image: PulledImage) -> tuple[SignatureEvidence, ...]:
        target = image.target
        tag = signature_tag(target.digest)
        reference = f"{target.registry}/{target.repository}:{tag}"
        try:
            manifest = self.client.get_manifest(target.registry, target.repository, tag)
        except NotFoundError:
            return ()
        except RegistryError as exc:
            raise VerifyError(f"looking up {reference}: {exc}") from None
        try:
            document = json.loads(manifest.data)
            layers = document.get("layers") or []
        except (ValueError, AttributeError):
            return (
                SignatureEvidence(
                    "cosign-tag", reference, manifest.digest, False, "malformed manifest"
                ),
            )
        found: list[SignatureEvidence] = []
        for layer in layers[:MAX_LAYERS]:
            if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_TYPE:
                continue
            found.append(
                self._layer(target.registry, target.repository, target.digest, reference, layer)
            )
        return tuple(found)

    def _layer(
        self,
        registry: str,
        repository: str,
        image_digest: str,
        reference: str,
        layer: dict[str, object],
    ) -> SignatureEvidence:
        digest = str(layer.get("digest", ""))
        size = layer.get("size")
        annotations = layer.get("annotations")
        has_signature = isinstance(annotations, dict) and bool(
            annotations.get(SIGNATURE_ANNOTATION)
        )
        if not isinstance(size, int) or size > MAX_PAYLOAD:
            return SignatureEvidence(
                "cosign-tag", reference, digest, False, "payload missing or too large"
            )
        try:
            payload = self.client.get_blob(registry, repository, digest, size).read_bytes()
        except RegistryError as exc:
            return SignatureEvidence(
                "cosign-tag", reference, digest, False, f"payload not fetched: {exc}"
            )
        named = _payload_digest(payload)
        if named != image_digest:
            reason = f"payload signs {named or 'nothing readable'}, not this image"
        elif not has_signature:
            reason = "layer carries no signature annotation"
        else:
            reason = "signature present, not verified: no trusted key or identity configured"
        return SignatureEvidence("cosign-tag", reference, digest, False, reason, None, payload)


def _payload_digest(payload: bytes) -> str | None:
    try:
        document = json.loads(payload)
        value = document["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None
