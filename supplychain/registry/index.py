"""Image indexes as a runtime reads them: which entries are images, which are attestations.

A container runtime picks an index entry by platform; it never looks at annotations. So every
entry naming an image manifest is a platform image here, whatever its annotations, unless it is an
attestation by BuildKit's own rules (``docs/attestations/attestation-storage.md``): platform
``unknown/unknown`` AND the annotation ``vnd.docker.reference.type: attestation-manifest`` AND
``vnd.docker.reference.digest`` naming a sibling entry of the same index. Even then the caller
verifies the attestation manifest's content before trusting the label
(:func:`is_attestation_manifest`).
Nested indexes are entries of kind ``index``; the caller follows them to a depth limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from registry_hooks.grammar import GrammarError, check_text
from supplychain.jsonutil import json_object
from supplychain.mediatypes import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from supplychain.registry.cache import check_digest
from supplychain.registry.errors import RegistryError

__all__ = [
    "MAX_INDEX_DEPTH",
    "MAX_INDEX_ENTRIES",
    "EntryKind",
    "IndexEntry",
    "descriptor",
    "is_attestation_manifest",
    "parse_index",
    "platform_images",
    "platform_of",
]

REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
IN_TOTO_LAYER = "application/vnd.in-toto+json"
_PLATFORM_PART = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
MAX_INDEX_ENTRIES = 256
"""Default limit on the entries of one image index (``SUPPLYCHAIN_INDEX_MAX_ENTRIES``)."""
MAX_INDEX_DEPTH = 4
"""Default limit on nested indexes (``SUPPLYCHAIN_INDEX_MAX_DEPTH``)."""

EntryKind = Literal["image", "index", "attestation", "artifact"]
"""``image``: a platform image (decided); ``index``: a nested index (followed);
``attestation``: a BuildKit attestation manifest (content checked); ``artifact``: an entry of
another media type naming no runnable platform (recorded, not run by any runtime)."""


@dataclass(frozen=True)
class IndexEntry:
    """One entry of an image index, classified."""

    position: int
    """Place in the index's ``manifests`` list, from 0."""
    digest: str
    """Digest of the entry's manifest."""
    media_type: str
    """Media type the entry states."""
    size: int
    """Size the entry states."""
    platform: str | None
    """``os/arch[/variant]`` the entry states, or None."""
    kind: EntryKind
    """How the entry is treated."""
    refers_to: str | None = None
    """For an attestation: the sibling image digest it annotates."""


def descriptor(value: object, what: str) -> tuple[str, str, int]:
    """``(mediaType, digest, size)`` of a descriptor, validated."""
    if not isinstance(value, dict):
        raise RegistryError(f"malformed {what} descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise RegistryError(f"malformed {what} descriptor")
    try:
        check_text(media_type, f"{what} mediaType", 255)
    except GrammarError as exc:
        raise RegistryError(str(exc)) from None
    check_digest(digest)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{what} {digest}: invalid size")
    return media_type, digest, size


def platform_of(value: object) -> str | None:
    """``os/architecture[/variant]`` of a config or index platform object, when it states one.

    Each part must be a short word (``[A-Za-z0-9._-]{1,64}``): the platform is stored, shown and
    matched against ``--platform``, so a slash, newline or bidi override in it is an error.
    """
    if not isinstance(value, dict):
        return None
    os_name, arch, variant = value.get("os"), value.get("architecture"), value.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    parts = [os_name, arch] + ([variant] if isinstance(variant, str) and variant else [])
    for part in parts:
        if _PLATFORM_PART.fullmatch(part) is None:
            raise RegistryError(f"platform field {part[:64]!a} is not a platform name")
    return "/".join(parts)


def _runnable(platform: str | None) -> bool:
    return platform is not None and not platform.startswith("unknown/unknown")


def parse_index(index_bytes: bytes, *, max_entries: int) -> tuple[IndexEntry, ...]:
    """The entries of an image index, classified; more than ``max_entries`` is an error."""
    document = json_object(index_bytes, "image index", RegistryError)
    media_type = document.get("mediaType")
    entries = document.get("manifests")
    if (media_type is not None and media_type not in INDEX_MEDIA_TYPES) or not isinstance(
        entries, list
    ):
        raise RegistryError("not an image index")
    if len(entries) > max_entries:
        raise RegistryError(
            f"image index lists {len(entries)} entries, more than the limit of {max_entries}"
        )
    raw = [(descriptor(entry, "index entry"), entry) for entry in entries]
    siblings = {digest for (item_type, digest, _), _ in raw if item_type in MANIFEST_MEDIA_TYPES}
    found: list[IndexEntry] = []
    for position, ((item_type, digest, size), entry) in enumerate(raw):
        platform = platform_of(entry.get("platform"))
        annotations = entry.get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        kind: EntryKind
        refers_to = None
        if item_type in INDEX_MEDIA_TYPES:
            kind = "index"
        elif item_type not in MANIFEST_MEDIA_TYPES:
            if _runnable(platform):
                raise RegistryError(
                    f"index entry {digest} names platform {platform} with media type "
                    f"{item_type[:100]!r}, which is no image manifest"
                )
            kind = "artifact"
        elif (
            platform == "unknown/unknown"
            and annotations.get(REFERENCE_TYPE) == ATTESTATION_MANIFEST
            and annotations.get(REFERENCE_DIGEST) in siblings
            and annotations.get(REFERENCE_DIGEST) != digest
        ):
            kind = "attestation"
            refers_to = str(annotations[REFERENCE_DIGEST])
        else:
            kind = "image"
        found.append(IndexEntry(position, digest, item_type, size, platform, kind, refers_to))
    return tuple(found)


def is_attestation_manifest(manifest_bytes: bytes) -> bool:
    """True when a manifest holds in-toto statements only (no layer a runtime could run)."""
    document = json_object(manifest_bytes, "attestation manifest", RegistryError)
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        return False
    return all(descriptor(layer, "layer")[0] == IN_TOTO_LAYER for layer in layers)


def platform_images(index_bytes: bytes, *, max_entries: int) -> list[tuple[str, str, str]]:
    """``(digest, media_type, platform)`` of the platform images an index lists, in order.

    For commands that pick one platform (``sbom``, ``scan``); an entry without a platform is
    ``unknown``. Nested indexes are not followed here.
    """
    return [
        (entry.digest, entry.media_type, entry.platform or "unknown")
        for entry in parse_index(index_bytes, max_entries=max_entries)
        if entry.kind == "image"
    ]
