"""The pipeline's :class:`ImageSource`: pull one image manifest by digest, verify, lay it out.

An image index is rejected here; the caller expands it with :func:`platform_manifests` and
queues each platform manifest as its own target.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from registry_hooks.grammar import GrammarError, check_text
from supplychain.interface import ImageSource, ImageTarget, Layer, PulledImage, SourceError
from supplychain.jsonutil import json_object
from supplychain.mediatypes import (
    IMAGE_CONFIG_TYPES,
    INDEX_MEDIA_TYPES,
    LAYER_TYPE_PREFIXES,
    MANIFEST_MEDIA_TYPES,
)
from supplychain.registry.cache import check_digest
from supplychain.registry.client import RegistryClient
from supplychain.registry.errors import BlobTooLargeError, NotAnImageError, RegistryError
from supplychain.registry.layout import write_layout

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_LAYERS",
    "RegistrySource",
    "image_manifest",
    "platform_manifests",
]

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_LAYERS = 1000
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
_PLATFORM_PART = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


class RegistrySource(ImageSource):
    """Pulls through ``client`` into ``work_root/<hex>-<random>`` (the caller removes it)."""

    def __init__(self, client: RegistryClient, work_root: Path) -> None:
        self.client = client
        self.work_root = Path(work_root)

    def pull(self, target: ImageTarget) -> PulledImage:
        hexdigest = check_digest(target.digest)
        client = self.client
        manifest = client.get_manifest(target.registry, target.repository, target.digest)
        if manifest.media_type in INDEX_MEDIA_TYPES:
            raise RegistryError(f"{target.pinned} is an image index: pull its platform manifests")
        if manifest.media_type not in MANIFEST_MEDIA_TYPES:
            raise RegistryError(
                f"{target.pinned}: unsupported manifest type {manifest.media_type[:100]!r}"
            )
        document, config_desc, layer_descs = image_manifest(manifest.data, target.pinned)
        _require_image(target, document, config_desc[0], [d[0] for d in layer_descs])
        if config_desc[2] > MAX_CONFIG_BYTES:
            raise BlobTooLargeError(
                f"{target.pinned}: config of {config_desc[2]} bytes is too large"
            )
        self.work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{hexdigest}-", dir=self.work_root))
        try:
            with client.cache.pin() as keep:
                blobs: list[tuple[str, Path]] = []
                layers: list[Layer] = []
                for media_type, digest, size in [config_desc, *layer_descs]:
                    keep(digest)
                    path = client.get_blob(target.registry, target.repository, digest, size)
                    blobs.append((digest, path))
                    if len(blobs) > 1:
                        layers.append(Layer(digest, media_type, size, path))
                config = blobs[0][1].read_bytes()
                write_layout(
                    work,
                    media_type=manifest.media_type,
                    manifest=manifest.data,
                    manifest_digest=manifest.digest,
                    blobs=blobs,
                    ref_name=target.tag,
                )
        except SourceError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        except (OSError, ValueError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise RegistryError(f"{target.pinned}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return PulledImage(
            target=target,
            media_type=manifest.media_type,
            manifest=manifest.data,
            config=config,
            platform=_platform(json_object(config, f"config of {target.pinned}", RegistryError)),
            layers=tuple(layers),
            layout_dir=work,
        )


def image_manifest(
    data: bytes, where: str
) -> tuple[dict[str, object], tuple[str, str, int], list[tuple[str, str, int]]]:
    """``(document, config, layers)`` of a schema 2 image manifest; each descriptor is
    ``(mediaType, digest, size)``, validated. :class:`RegistryError` for anything else."""
    document = json_object(data, f"manifest {where}", RegistryError)
    config_desc = _descriptor(document.get("config"), "config")
    layer_list = document.get("layers")
    if document.get("schemaVersion") != 2 or not isinstance(layer_list, list):
        raise RegistryError(f"{where}: not a schema 2 image manifest")
    if len(layer_list) > MAX_LAYERS:
        raise RegistryError(f"{where}: {len(layer_list)} layers, over {MAX_LAYERS}")
    return document, config_desc, [_descriptor(item, "layer") for item in layer_list]


def _require_image(
    target: ImageTarget, document: dict[str, object], config_type: str, layer_types: list[str]
) -> None:
    """Raise :class:`NotAnImageError` for OCI artifacts (cosign signatures, bundles, SBOMs…)."""
    artifact = document.get("artifactType")
    if artifact:
        raise NotAnImageError(f"{target.pinned}: an artifact of type {str(artifact)[:100]!r}")
    if config_type not in IMAGE_CONFIG_TYPES:
        raise NotAnImageError(f"{target.pinned}: config type {config_type[:100]!r} is no image's")
    for layer_type in layer_types:
        if not layer_type.startswith(LAYER_TYPE_PREFIXES):
            raise NotAnImageError(f"{target.pinned}: layer type {layer_type[:100]!r} is no image's")


def platform_manifests(index_bytes: bytes) -> list[tuple[str, str, str]]:
    """``(digest, media_type, "os/arch[/variant]")`` of the image manifests an index lists.

    Skips BuildKit attestation manifests (platform ``unknown/unknown`` or the
    ``vnd.docker.reference.type`` annotation), nested indexes and non-image artifacts; an entry
    without a platform is kept as ``unknown``.
    """
    document = json_object(index_bytes, "image index", RegistryError)
    media_type = document.get("mediaType")
    entries = document.get("manifests")
    if (media_type is not None and media_type not in INDEX_MEDIA_TYPES) or not isinstance(
        entries, list
    ):
        raise RegistryError("not an image index")
    found: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        item_type, digest, _ = _descriptor(entry, "index entry")
        annotations = entry.get("annotations") or {}
        if item_type not in MANIFEST_MEDIA_TYPES or digest in seen:
            continue
        if (
            isinstance(annotations, dict)
            and annotations.get(ATTESTATION_ANNOTATION) == "attestation-manifest"
        ):
            continue
        platform = _platform(entry.get("platform")) or "unknown"
        if platform.startswith("unknown/unknown"):
            continue
        seen.add(digest)
        found.append((digest, item_type, platform))
    return found


def _descriptor(value: object, what: str) -> tuple[str, str, int]:
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


def _platform(value: object) -> str | None:
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
