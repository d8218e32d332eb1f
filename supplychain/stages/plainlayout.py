"""A copy of a pulled image's layout with its layers decompressed, for Trivy to read.

Trivy spends about half of a cold ``trivy image`` inflating the layers with Go's gzip (measured
on the test image: 1.55 s of CPU on the gzip layout, 0.75 s on the same image with plain tar
layers; docs/benchmarks.md). ``isal`` inflates the same layers in a fraction of that, so the
scanner hands Trivy this copy: the same manifest with each layer replaced by its uncompressed
tar (media type without ``+gzip``/``+zstd``), named by the SHA-256 computed while it is written.

The copy is only used when every written layer hashes to the ``diff_id`` the config states
for it (what Trivy keys layers by): otherwise Trivy gets the layout as pulled, so the findings
are Trivy's own in every case. Trivy reports a finding's layer by the manifest's digest, which
here is the uncompressed one: :func:`restore_layers` puts the pulled (compressed) digests back
into the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sbom.reader import DEFAULT_MAX_BYTES
from supplychain.interface import Layer, PulledImage
from supplychain.registry.layout import REF_NAME_ANNOTATION, write_layout
from supplychain.stages.children import CHILDREN

__all__ = ["plain_layout", "restore_layers"]

log = logging.getLogger(__name__)
_TIMEOUT = 600  # seconds for one layer; Trivy's own timeout bounds the scan after it
_COMPRESSED = ("+gzip", "+zstd", ".gzip", ".zstd")


def _plain_type(media_type: str) -> str:
    """The media type of the layer once decompressed (``…tar+gzip`` → ``…tar``)."""
    for suffix in _COMPRESSED:
        if media_type.endswith(suffix):
            return media_type[: -len(suffix)]
    return media_type


def _inflate(source: Path, blobs: Path, max_bytes: int) -> tuple[str, int] | None:
    """Decompress ``source`` into ``blobs`` in a child process; its digest and size, or None."""
    command = [sys.executable, "-m", "supplychain.stages.inflate", str(source), str(blobs)]
    try:
        done = CHILDREN.run([*command, str(max_bytes)], timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.decode("ascii", "replace").split()
    if done.returncode != 0 or len(words) != 2 or not words[1].isdigit():
        log.info("layer %s not decompressed for Trivy: %s", source.name, done.stderr[-300:])
        return None
    return words[0], int(words[1])


def plain_layout(
    image: PulledImage, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, str] | None:
    """Write the decompressed copy of ``image`` into ``directory`` (empty or absent).

    Returns ``{uncompressed digest: pulled digest}`` of its layers, or None when the copy cannot
    stand in for the pulled layout (a layer that does not hash to its ``diff_id``, a layer that
    fails to decompress, a manifest or config we do not read): scan the pulled layout then.
    Layers are inflated by child processes (:mod:`supplychain.stages.inflate`), in parallel.
    """
    try:
        manifest = json.loads(image.manifest)
        diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]
        entries = manifest["layers"]
        config_digest = manifest["config"]["digest"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(entries, list) and isinstance(diff_ids, list)):
        return None
    if len(entries) != len(image.layers) or len(diff_ids) != len(image.layers):
        return None
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    threads = max(1, min(len(image.layers), os.cpu_count() or 1))
    owner = CHILDREN.current_owner()  # a worker that is stopped kills these children too

    def inflate(layer: Layer) -> tuple[str, int] | None:
        with CHILDREN.owned_by(owner):
            return _inflate(layer.path, blobs, max_bytes)

    with ThreadPoolExecutor(threads, thread_name_prefix="inflate") as pool:
        done = list(pool.map(inflate, image.layers))
    written = [item for item in done if item is not None]
    if [digest for digest, _ in written] != diff_ids:
        return None
    for entry, (digest, size) in zip(entries, written, strict=True):
        entry.update(mediaType=_plain_type(str(entry["mediaType"])), digest=digest, size=size)
    data = json.dumps(manifest, indent=2).encode()
    config = image.layout_dir / "blobs" / "sha256" / str(config_digest).removeprefix("sha256:")
    write_layout(
        directory,
        media_type=image.media_type,
        manifest=data,
        manifest_digest=f"sha256:{hashlib.sha256(data).hexdigest()}",
        blobs=[(str(config_digest), config)],
        ref_name=_ref_name(image.layout_dir),
    )
    return {plain: layer.digest for (plain, _), layer in zip(written, image.layers, strict=True)}


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
