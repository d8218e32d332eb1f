"""A layout of a pulled image with the layers the pull inflated, for Trivy to read.

Trivy spends about half of a cold ``trivy image`` inflating the layers with Go's gzip (measured
on the test image: 1.55 s of CPU on the gzip layout, 0.75 s on the same image with plain tar
layers; docs/benchmarks.md). The pull inflates gzip layers while it downloads them
(:mod:`supplychain.registry.inflate`), each copy hashed to the ``diff_id`` the config states; this
layout is the same manifest with each such layer replaced by its plain tar (media type without
``+gzip``, digest = diff_id); layers without a copy stay as pulled.

Trivy reports a finding's layer by the manifest's digest, which for a replaced layer is the
uncompressed one: :func:`restore_layers` puts the pulled (compressed) digests back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supplychain.interface import PulledImage
from supplychain.registry.layout import REF_NAME_ANNOTATION, write_layout

__all__ = ["plain_layout", "restore_layers"]

_COMPRESSED = ("+gzip", ".gzip")


def _plain_type(media_type: str) -> str:
    """The media type of the layer once decompressed (``…tar+gzip`` → ``…tar``)."""
    for suffix in _COMPRESSED:
        if media_type.endswith(suffix):
            return media_type[: -len(suffix)]
    return media_type


def plain_layout(image: PulledImage, directory: Path) -> dict[str, str] | None:
    """Write the layout with the inflated layers of ``image`` into ``directory`` (empty or
    absent) and return ``{uncompressed digest: pulled digest}`` of the layers replaced; None
    (nothing written) when the pull inflated none or the manifest is not one we read."""
    if not any(layer.plain is not None for layer in image.layers):
        return None
    try:
        manifest = json.loads(image.manifest)
        diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]
        entries = manifest["layers"]
        config_digest = str(manifest["config"]["digest"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(entries, list) and isinstance(diff_ids, list)):
        return None
    if not len(entries) == len(diff_ids) == len(image.layers):
        return None
    blobs: list[tuple[str, Path]] = [(config_digest, _blob(image, config_digest))]
    replaced: dict[str, str] = {}
    for entry, diff_id, layer in zip(entries, diff_ids, image.layers, strict=True):
        if not isinstance(entry, dict) or entry.get("digest") != layer.digest:
            return None
        if layer.plain is None or layer.plain.name != str(diff_id).removeprefix("sha256:"):
            blobs.append((layer.digest, layer.path))
            continue
        entry.update(
            mediaType=_plain_type(str(entry.get("mediaType"))),
            digest=diff_id,
            size=layer.plain.stat().st_size,
        )
        blobs.append((diff_id, layer.plain))
        replaced[diff_id] = layer.digest
    data = json.dumps(manifest, indent=2).encode()
    write_layout(
        directory,
        media_type=image.media_type,
        manifest=data,
        manifest_digest=f"sha256:{hashlib.sha256(data).hexdigest()}",
        blobs=blobs,
        ref_name=_ref_name(image.layout_dir),
    )
    return replaced


def _blob(image: PulledImage, digest: str) -> Path:
    return image.layout_dir / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _ref_name(layout: Path) -> str | None:
    """The pulled layout's tag annotation (Trivy's ``--input DIR`` takes the only image)."""
    try:
        index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        name = index["manifests"][0].get("annotations", {}).get(REF_NAME_ANNOTATION)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def restore_layers(report: dict[str, Any], digests: Mapping[str, str]) -> None:
    """Put the pulled layer digests back where Trivy names a layer of the plain copy."""
    for result in report.get("Results") or []:
        if not isinstance(result, dict):
            continue
        for key in ("Vulnerabilities", "Secrets", "Packages", "Misconfigurations", "Licenses"):
            for item in result.get(key) or []:
                layer = item.get("Layer") if isinstance(item, dict) else None
                if isinstance(layer, dict) and layer.get("Digest") in digests:
                    layer["Digest"] = digests[layer["Digest"]]
