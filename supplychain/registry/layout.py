"""Writes an OCI image layout (image-spec ``image-layout.md``) holding one image.

``oci-layout``, ``index.json`` with the one manifest descriptor, and ``blobs/sha256/<hex>``: the
manifest bytes as fetched, other blobs hard-linked from the cache (copied across filesystems).
Trivy reads it with ``trivy image --input DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from supplychain.mediatypes import OCI_INDEX
from supplychain.registry.cache import check_digest

__all__ = ["REF_NAME_ANNOTATION", "write_layout"]

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def write_layout(
    directory: Path,
    *,
    media_type: str,
    manifest: bytes,
    manifest_digest: str,
    blobs: Iterable[tuple[str, Path]],
    ref_name: str | None = None,
) -> Path:
    """Write the layout into ``directory`` (created; must be empty) and return it.

    ``blobs`` are ``(digest, path)`` pairs of already verified files.
    """
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    if any(p.name != "blobs" for p in directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    (blob_dir / check_digest(manifest_digest)).write_bytes(manifest)
    for digest, source in blobs:
        target = blob_dir / check_digest(digest)
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    descriptor: dict[str, object] = {
        "mediaType": media_type,
        "digest": manifest_digest,
        "size": len(manifest),
    }
    if ref_name:
        descriptor["annotations"] = {REF_NAME_ANNOTATION: ref_name}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    (directory / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}\n', encoding="utf-8")
    return directory
