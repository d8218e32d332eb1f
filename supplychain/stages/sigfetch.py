"""Fetching an image's signature and attestation blobs: each digest once, within caps.

A hostile image can list one large blob many times in its ``.sig``/``.att`` manifests or
referrers. :class:`Fetches` is the per-image budget the verifier reads through: a listing that
repeats an earlier one (same descriptor) is the same signature and is skipped; a blob is fetched
once per digest and its bytes shared by every listing naming it; and the caps below bound what
one image can make us read, check and store. Whatever is over a cap becomes unverified evidence
saying so: never an allow, never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from supplychain.interface import ImageTarget, SignatureEvidence
from supplychain.signatures.storage import (
    MAX_LAYERS,
    MAX_PAYLOAD_BYTES,
    SignatureStore,
    StorageError,
)

__all__ = [
    "MAX_PAYLOAD_BYTES_PER_IMAGE",
    "MAX_SIGNATURES",
    "Fetches",
    "Found",
]

MAX_SIGNATURES = 256
"""Signatures, attestations and bundles checked for one image."""
MAX_PAYLOAD_BYTES_PER_IMAGE = 64 * 1024 * 1024
"""Distinct blob bytes read for one image (each blob at most ``MAX_PAYLOAD_BYTES``)."""


@dataclass(frozen=True)
class Found:
    """One fetched signature or attestation blob, before checking."""

    kind: str
    """Evidence kind (see :mod:`supplychain.stages.verifier`)."""
    reference: str
    """Where it was found."""
    digest: str
    """Digest of the blob (a verified layer)."""
    blob: bytes
    """The blob's bytes (shared by every listing of the same digest)."""


Check = Callable[[Found, dict[str, Any]], SignatureEvidence]


def unverified(kind: str, where: str, digest: str, reason: str) -> SignatureEvidence:
    """Evidence that something was found and not checked."""
    return SignatureEvidence(kind, where, digest[:80], False, reason)


class Fetches:
    """The verifier's reads for one image (module doc)."""

    def __init__(self, store: SignatureStore, target: ImageTarget) -> None:
        self.store = store
        self.target = target
        self.checked = 0
        self.bytes_read = 0
        self.full = False
        self._blobs: dict[tuple[str, int], bytes | str] = {}

    def check_layers(
        self, kind: str, where: str, layers: Iterable[dict[str, Any]], check: Check
    ) -> list[SignatureEvidence]:
        """Evidence for each distinct listing in ``layers`` (one manifest), within the caps."""
        unique: dict[str, dict[str, Any]] = {}
        for layer in layers:
            unique.setdefault(json.dumps(layer, sort_keys=True), layer)
        listed = list(unique.values())
        results: list[SignatureEvidence] = []
        if len(listed) > MAX_LAYERS:
            reason = (
                f"{len(listed) - MAX_LAYERS} more signatures in this manifest not checked: "
                f"over the cap of {MAX_LAYERS} per manifest"
            )
            results.append(unverified(kind, where, "", reason))
        for layer in listed[:MAX_LAYERS]:
            if self.over_image_cap(kind, where, results):
                break
            item = self.read(kind, where, layer)
            results.append(item if isinstance(item, SignatureEvidence) else check(item, layer))
        return results

    def over_image_cap(self, kind: str, where: str, results: list[SignatureEvidence]) -> bool:
        """True once :data:`MAX_SIGNATURES` were checked; the first time, says so in ``results``."""
        if self.checked < MAX_SIGNATURES:
            self.checked += 1
            return False
        if not self.full:
            self.full = True
            reason = f"further signatures not checked: over the cap of {MAX_SIGNATURES} per image"
            results.append(unverified(kind, where, "", reason))
        return True

    def read(self, kind: str, where: str, layer: dict[str, Any]) -> Found | SignatureEvidence:
        """The layer's bytes (fetched once per digest), or evidence why they were not read."""
        digest, size = str(layer.get("digest", "")), layer.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            return unverified(kind, where, digest, "not fetched: descriptor lacks a size")
        if size > MAX_PAYLOAD_BYTES:
            reason = f"not fetched: {size} bytes, over the cap of {MAX_PAYLOAD_BYTES} per payload"
            return unverified(kind, where, digest, reason)
        blob = self._blobs.get((digest, size))
        if blob is None:
            if self.bytes_read + size > MAX_PAYLOAD_BYTES_PER_IMAGE:
                reason = (
                    "not fetched: over the cap of "
                    f"{MAX_PAYLOAD_BYTES_PER_IMAGE} payload bytes per image"
                )
                return unverified(kind, where, digest, reason)
            try:
                blob = self.store.read_layer(self.target, layer)
                self.bytes_read += len(blob)
            except StorageError as exc:
                blob = f"not fetched: {exc}"
            self._blobs[(digest, size)] = blob
        if isinstance(blob, str):
            return unverified(kind, where, digest, blob)
        return Found(kind, where, digest[:80], blob)
