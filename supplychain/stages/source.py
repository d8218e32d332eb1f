"""The pipeline's :class:`ImageSource`: pull one image manifest by digest, verify, lay it out.

An image index is rejected here; the caller expands it (:mod:`supplychain.registry.index`)
and queues each platform manifest as its own target.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

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
from supplychain.registry.index import descriptor as _descriptor
from supplychain.registry.index import platform_of as _platform
from supplychain.registry.inflate import LayerInflater
from supplychain.registry.layout import write_layout

__all__ = ["MAX_CONFIG_BYTES", "MAX_LAYERS", "RegistrySource", "image_manifest"]

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_LAYERS = 1000
_GZIP_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


class RegistrySource(ImageSource):
    """Pulls through ``client`` into ``work_root/<hex>-<random>`` (the caller removes it).

    Gzip layers are inflated while they download (:mod:`supplychain.registry.inflate`), up to
    ``max_layer_bytes`` each; the verified copies land in ``blobs/.inflated`` of the layout
    under their diff_ids and are named by :attr:`Layer.plain`.
    """

    def __init__(
        self, client: RegistryClient, work_root: Path, *, max_layer_bytes: int = 8 * 1024**3
    ) -> None:
        self.client = client
        self.work_root = Path(work_root)
        self.max_layer_bytes = max_layer_bytes

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
                keep(config_desc[1])
                config_path = client.get_blob(
                    target.registry, target.repository, config_desc[1], config_desc[2]
                )
                blobs: list[tuple[str, Path]] = [(config_desc[1], config_path)]
                layers: list[Layer] = []
                diff_ids = _diff_ids(config_path.read_bytes(), len(layer_descs))
                plain_dir = work / "blobs" / ".inflated"  # beside the layout's own blobs
                plain_dir.mkdir(parents=True)
                inflaters: list[LayerInflater | None] = []
                try:
                    for (media_type, digest, size), diff_id in zip(
                        layer_descs, diff_ids, strict=True
                    ):
                        keep(digest)
                        inflater = None
                        if diff_id is not None and media_type in _GZIP_TYPES:
                            inflater = LayerInflater(diff_id, plain_dir, self.max_layer_bytes)
                        inflaters.append(inflater)
                        tee = inflater.feed if inflater is not None else None
                        path = client.get_blob(
                            target.registry, target.repository, digest, size, tee
                        )
                        if inflater is not None and inflater.fed != size:
                            inflater.abandon()  # a cache hit: the blob was not streamed
                        blobs.append((digest, path))
                        layers.append(Layer(digest, media_type, size, path))
                except BaseException:
                    for item in inflaters:
                        if item is not None:
                            item.abandon()
                            item.result()
                    raise
                layers = [
                    dataclasses.replace(layer, plain=item.result()) if item is not None else layer
                    for layer, item in zip(layers, inflaters, strict=True)
                ]
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


def _diff_ids(config: bytes, count: int) -> list[str | None]:
    """The config's ``rootfs.diff_ids`` when it states one valid digest per layer, else Nones
    (no layer is inflated then: the pull itself does not depend on them)."""
    try:
        found = json.loads(config)["rootfs"]["diff_ids"]
        if isinstance(found, list) and len(found) == count:
            return [item if check_digest(item) else None for item in found]
    except (ValueError, KeyError, TypeError, RegistryError):
        pass
    return [None] * count


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
