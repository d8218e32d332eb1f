"""Storing signatures next to images, and finding them again, through the registry API.

Two schemes: cosign's tags (``sha256-<hex>.sig`` / ``.att``: one manifest, one layer per
signature, new layers appended as cosign does) and OCI 1.1 referrers (an artifact manifest whose
``subject`` is the image). A registry with the referrers API answers ``OCI-Subject`` to the push
and lists referrers at ``/v2/<name>/referrers/<digest>``; for one without it (distribution 2.8)
we maintain the fallback index under the tag ``sha256-<hex>`` (distribution-spec v1.1
"referrers tag schema").

Reads go through :class:`~supplychain.registry.RegistryClient`, so manifests fetched by digest
and every blob are verified against their digests; a referrers API answer is only a list, and
each manifest it names is then fetched by digest. Writes go through the client's one
request-and-auth loop (:meth:`~supplychain.registry.RegistryClient.send`, scope ``pull,push``).
oras-py is not used: its ``upload_manifest`` re-serialises the document, always sends the
image-manifest media type and rejects indexes, and its token flow follows the registry's realm
without our outbound-URL checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from supplychain.interface import ImageTarget
from supplychain.mediatypes import OCI_INDEX, OCI_MANIFEST
from supplychain.registry import Manifest, NotFoundError, RegistryClient, RegistryError
from supplychain.registry.network import read_limited

__all__ = [
    "EMPTY_CONFIG",
    "MAX_LAYERS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REFERRERS",
    "Referrer",
    "SignatureStore",
    "StorageError",
    "fallback_tag",
    "tag_for",
]

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
MAX_LAYERS = 64
"""Layers kept in a ``.sig``/``.att`` manifest we write, and checked in one we read."""
MAX_REFERRERS = 256
"""Referrer manifests fetched for one image."""
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Size cap of one signature, attestation or bundle blob (simple-signing and DSSE are small)."""


class StorageError(Exception):
    """Signatures could not be pushed to, or listed from, a registry."""


@contextmanager
def _registry(what: str) -> Iterator[None]:
    """Turn the registry client's errors (allowlist, auth, digest mismatch) into ours."""
    try:
        yield
    except RegistryError as exc:
        raise StorageError(f"{what}: {exc}") from None


def tag_for(digest: str, suffix: str) -> str:
    """cosign's tag for ``digest``: ``sha256-<hex>.<suffix>`` (``sig``, ``att``, ``sbom``)."""
    return f"{fallback_tag(digest)}.{suffix}"


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _sha256(data), "size": len(data), **extra}


@dataclass(frozen=True)
class Referrer:
    """One artifact found referring to an image."""

    manifest: Manifest
    """The artifact manifest, verified against its digest."""
    artifact_type: str
    """``artifactType`` (or the config media type when absent)."""
    layers: tuple[dict[str, Any], ...]
    """Its layer descriptors."""
    via: str
    """``referrers-api`` or ``referrers-tag``."""


class SignatureStore:
    """Pushes and finds signature artifacts for images of allowlisted registries."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    # -- writing ----------------------------------------------------------------------------

    def attach_to_tag(
        self,
        target: ImageTarget,
        suffix: str,
        layer: bytes,
        media_type: str,
        annotations: dict[str, str],
    ) -> str:
        """Add ``layer`` to the ``sha256-<hex>.<suffix>`` manifest (made if missing); its digest."""
        tag = tag_for(target.digest, suffix)
        with _registry(f"looking up {tag}"):
            existing = self.client.try_get_manifest(target.registry, target.repository, tag)
        layers: list[dict[str, Any]] = []
        if existing is not None:
            layers = [d for d in _json(existing.data).get("layers", []) if isinstance(d, dict)]
        new = _descriptor(media_type, layer, annotations=annotations)
        if new not in layers:
            layers.append(new)
        self.push_blob(target, layer)
        config = json.dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
            },
            separators=(",", ":"),
        ).encode()
        self.push_blob(target, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": layers[-MAX_LAYERS:],
        }
        return self.push_manifest(target, tag, _dumps(manifest), OCI_MANIFEST)[0]

    def attach_referrer(
        self,
        target: ImageTarget,
        artifact_type: str,
        layer: bytes,
        media_type: str,
        annotations: dict[str, str],
    ) -> str:
        """Push ``layer`` as an OCI 1.1 artifact whose subject is ``target``; its digest.

        When the registry does not confirm the subject (no ``OCI-Subject`` header), the
        fallback index under ``sha256-<hex>`` is updated to list the artifact.
        """
        with _registry(f"fetching {target.pinned}"):
            subject = self.client.get_manifest(target.registry, target.repository, target.digest)
        self.push_blob(target, layer)
        self.push_blob(target, EMPTY_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": _descriptor(EMPTY_TYPE, EMPTY_CONFIG),
            "layers": [_descriptor(media_type, layer, annotations=annotations)],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": len(subject.data),
            },
            "annotations": annotations,
        }
        data = _dumps(manifest)
        digest, confirmed = self.push_manifest(target, _sha256(data), data, OCI_MANIFEST)
        if not confirmed:
            entry = _descriptor(
                OCI_MANIFEST, data, artifactType=artifact_type, annotations=annotations
            )
            self._add_to_fallback(target, entry)
        return digest

    def _add_to_fallback(self, target: ImageTarget, entry: dict[str, Any]) -> None:
        tag = fallback_tag(target.digest)
        with _registry(f"looking up {tag}"):
            existing = self.client.try_get_manifest(target.registry, target.repository, tag)
        manifests: list[dict[str, Any]] = []
        if existing is not None:
            listed = _json(existing.data).get("manifests", [])
            manifests = [d for d in listed if isinstance(d, dict)]
        if all(d.get("digest") != entry["digest"] for d in manifests):
            manifests.append(entry)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        self.push_manifest(target, tag, _dumps(index), OCI_INDEX)

    def push_blob(self, target: ImageTarget, data: bytes) -> str:
        """Upload ``data`` (monolithic POST + PUT) unless present; its digest."""
        digest = _sha256(data)
        with self._send("HEAD", target, f"blobs/{digest}") as head:
            if head.status_code == 200:
                return digest
        with self._send("POST", target, "blobs/uploads/") as started:
            if started.status_code != 202 or not started.headers.get("Location"):
                raise StorageError(f"blob upload refused: HTTP {started.status_code}")
            location = started.headers["Location"]
        url = urljoin(self.client.base_url(target.registry) + "/", location)
        separator = "&" if urlsplit(url).query else "?"
        headers = {"Content-Type": "application/octet-stream"}
        with self._send("PUT", target, f"{url}{separator}digest={digest}", headers, data) as done:
            if done.status_code != 201:
                raise StorageError(f"blob upload of {digest} failed: HTTP {done.status_code}")
        return digest

    def push_manifest(
        self, target: ImageTarget, reference: str, data: bytes, media_type: str
    ) -> tuple[str, bool]:
        """PUT ``data`` under ``reference``; its digest and whether ``OCI-Subject`` came back."""
        digest = _sha256(data)
        headers = {"Content-Type": media_type}
        with self._send("PUT", target, f"manifests/{reference}", headers, data) as response:
            if response.status_code != 201:
                raise StorageError(f"manifest push failed: HTTP {response.status_code}")
            stated = response.headers.get("Docker-Content-Digest")
            subject = response.headers.get("OCI-Subject")
        if stated and stated != digest:
            raise StorageError(f"registry stored {stated[:80]}, we sent {digest}")
        return digest, bool(subject)

    def _send(
        self,
        method: str,
        target: ImageTarget,
        path: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """One request through the client's request-and-auth loop (its allowlist, checked
        addresses and tokens; scope ``pull`` for reads, ``pull,push`` for writes)."""
        with _registry(f"{method} on {target.registry}"):
            return self.client.send(
                method, target.registry, target.repository, path, headers=headers, data=data
            )

    # -- reading ----------------------------------------------------------------------------

    def tag_layers(
        self, target: ImageTarget, suffix: str
    ) -> tuple[Manifest, tuple[dict[str, Any], ...]] | None:
        """The ``.<suffix>`` tag's manifest and all its layer descriptors, or None when absent.

        The list is bounded by the manifest size limit; callers apply their own caps.
        """
        tag = tag_for(target.digest, suffix)
        with _registry(f"looking up {tag}"):
            manifest = self.client.try_get_manifest(target.registry, target.repository, tag)
        if manifest is None:
            return None
        return manifest, _layers(_json(manifest.data))

    def referrers(self, target: ImageTarget) -> tuple[Referrer, ...]:
        """Artifacts whose subject is ``target`` (the first :data:`MAX_REFERRERS` listed)."""
        listed, via = self.referrer_listing(target)
        found = (self.fetch_referrer(target, entry, via) for entry in listed[:MAX_REFERRERS])
        return tuple(referrer for referrer in found if referrer is not None)

    def referrer_listing(self, target: ImageTarget) -> tuple[list[Any], str]:
        """The entries listing referrers of ``target`` and where the list came from: the
        referrers API, else the fallback tag (``referrers-api`` / ``referrers-tag``)."""
        listed = self._referrers_api(target)
        if listed is not None:
            return listed, "referrers-api"
        with _registry("looking up the referrers tag"):
            index = self.client.try_get_manifest(
                target.registry, target.repository, fallback_tag(target.digest)
            )
        entries = _json(index.data).get("manifests", []) if index is not None else []
        return (entries if isinstance(entries, list) else []), "referrers-tag"

    def fetch_referrer(self, target: ImageTarget, entry: Any, via: str) -> Referrer | None:
        """The manifest a listing ``entry`` names, fetched by digest; None when it is gone,
        malformed, or its own ``subject`` is not ``target`` (a listing may claim anything)."""
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str):
            return None
        try:
            manifest = self.client.get_manifest(target.registry, target.repository, digest)
        except NotFoundError:
            return None
        except RegistryError as exc:
            raise StorageError(f"fetching referrer {digest[:80]}: {exc}") from None
        document = _json(manifest.data)
        subject = document.get("subject")
        if not isinstance(subject, dict) or subject.get("digest") != target.digest:
            return None
        config = document.get("config")
        kind = document.get("artifactType") or (
            config.get("mediaType") if isinstance(config, dict) else None
        )
        return Referrer(manifest, str(kind or ""), _layers(document), via)

    def _referrers_api(self, target: ImageTarget) -> list[Any] | None:
        """The referrers API's list, or None when the registry has no such API (404)."""
        headers = {"Accept": OCI_INDEX}
        with self._send("GET", target, f"referrers/{target.digest}", headers) as response:
            if response.status_code in (400, 404, 405):
                return None
            if response.status_code != 200:
                raise StorageError(f"referrers API answered HTTP {response.status_code}")
            with _registry("reading the referrers list"):
                body = read_limited(response, self.client.max_manifest_bytes, "referrers list")
        listed = _json(body).get("manifests", [])
        return listed if isinstance(listed, list) else []

    def read_layer(self, target: ImageTarget, descriptor: dict[str, Any]) -> bytes:
        """A layer's bytes, fetched through the client (digest and size verified)."""
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool):
            raise StorageError("layer descriptor lacks digest or size")
        if size > MAX_PAYLOAD_BYTES:
            raise StorageError(f"payload of {size} bytes is over the cap of {MAX_PAYLOAD_BYTES}")
        try:
            path = self.client.get_blob(target.registry, target.repository, digest, size)
        except RegistryError as exc:
            raise StorageError(f"layer {digest[:80]} not fetched: {exc}") from None
        return path.read_bytes()


def _layers(document: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    layers = document.get("layers")
    return tuple(d for d in layers if isinstance(d, dict)) if isinstance(layers, list) else ()


def _json(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
