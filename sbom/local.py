"""Images on local disk: an OCI image layout (``oci:DIR[:TAG]``) or ``docker save`` output
(``docker-archive:FILE.tar``). Every blob read is checked against its digest first.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, overload

from sbom.blob import blob_digest
from sbom.errors import LayerError
from sbom.inputs import ImageInfo, LayerInput
from sbom.tar import TarReader

__all__ = ["LOCAL_PREFIXES", "LocalImageError", "docker_archive", "oci_layout", "read_local"]

LOCAL_PREFIXES = ("oci:", "docker-archive:")
"""Image names that mean a local image, as skopeo spells them."""

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_JSON = 16 * 1024 * 1024
_MAX_MEMBERS = 100_000


class LocalImageError(LayerError):
    """A local image could not be read, or a blob did not match its digest."""


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LocalImageError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise LocalImageError(f"{what} is not a JSON object")
    return value


def _blob(layout: Path, digest: object) -> Path:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise LocalImageError(f"unsupported or invalid digest {str(digest)[:80]!r}")
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _verified(layout: Path, digest: object) -> bytes:
    path = _blob(layout, digest)
    if path.stat().st_size > _MAX_JSON:
        raise LocalImageError(f"{digest} is too large for a manifest")
    data = path.read_bytes()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise LocalImageError(f"blob {digest} does not match its digest")
    return data


def oci_layout(layout: Path, tag: str | None) -> tuple[list[LayerInput], ImageInfo]:
    """The layers of ``tag`` (or the only image) of an OCI layout, verified."""
    try:
        index = _json((layout / "index.json").read_bytes()[: _MAX_JSON + 1], "index.json")
        entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
        if tag is not None:
            entries = [m for m in entries if (m.get("annotations") or {}).get(_REF_NAME) == tag]
        if len(entries) != 1:
            found = "no image" if not entries else "several images"
            raise LocalImageError(f"{layout}: {found} for tag {tag!r} (name one with :TAG)")
        digest = entries[0].get("digest")
        manifest = _json(_verified(layout, digest), f"manifest {digest}")
        if manifest.get("mediaType") in _INDEX_TYPES or entries[0].get("mediaType") in _INDEX_TYPES:
            children = [m for m in manifest.get("manifests") or [] if isinstance(m, dict)]
            chosen = next(
                (c for c in children if (c.get("platform") or {}).get("architecture") == "amd64"),
                children[0] if children else None,
            )
            if chosen is None:
                raise LocalImageError(f"{layout}: empty image index")
            digest = chosen.get("digest")
            manifest = _json(_verified(layout, digest), f"manifest {digest}")
        layers = []
        for item in manifest.get("layers") or []:
            # checked against its digest while it is read (or before a cached result is used)
            layers.append(
                LayerInput(item["digest"], _blob(layout, item.get("digest")), verified=False)
            )
    except OSError as exc:
        raise LocalImageError(f"{layout}: {exc}") from None
    return layers, ImageInfo(name=layout.name or "image", digest=str(digest), tag=tag)


def read_local(image: str) -> tuple[list[LayerInput], ImageInfo, bytes | None]:
    """``oci:DIR[:TAG]`` or ``docker-archive:FILE``: layers, image info, and the config bytes of
    a docker archive (an OCI layout's config is a blob of the layout)."""
    if image.startswith("oci:"):
        directory, colon, tag = image[4:].rpartition(":")
        if not colon or "/" in tag:
            directory, tag = image[4:], ""
        return (*oci_layout(Path(directory), tag or None), None)
    if image.startswith("docker-archive:"):
        return docker_archive(Path(image[len("docker-archive:") :]), with_config=True)
    raise LocalImageError(f"{image}: not oci:DIR[:TAG] or docker-archive:FILE")


def _members(archive: Path) -> dict[str, tuple[int, int]]:
    """``name: (data offset, size)`` of the regular files of a tar, read with our strict parser
    (``tarfile`` loops for ever on negative sizes: CPython's CVE-2025-8194)."""
    members: dict[str, tuple[int, int]] = {}
    with archive.open("rb") as handle:
        tar = TarReader(handle, archive.stat().st_size)
        while (header := tar.next()) is not None:
            if header.kind in (b"0", b"\0", b"7"):
                if len(members) >= _MAX_MEMBERS:
                    raise LocalImageError(f"{archive}: more than {_MAX_MEMBERS} files")
                name = header.name.decode("utf-8", "replace").lstrip("./")
                members[name] = (tar.offset, header.size)
    return members


def _member(archive: Path, where: tuple[int, int] | None, what: str) -> bytes:
    if where is None:
        raise LocalImageError(f"{archive}: {what} not in the archive")
    offset, size = where
    if size > _MAX_JSON:
        raise LocalImageError(f"{archive}: {what} is too large")
    with archive.open("rb") as handle:
        handle.seek(offset)
        return handle.read(size)


@overload
def docker_archive(archive: Path) -> tuple[list[LayerInput], ImageInfo]: ...
@overload
def docker_archive(
    archive: Path, *, with_config: Literal[True]
) -> tuple[list[LayerInput], ImageInfo, bytes]: ...
def docker_archive(archive: Path, *, with_config: bool = False) -> Any:
    """The layers of the (first) image of a ``docker save`` tar, read in place (not unpacked);
    ``with_config`` adds the image config's bytes (its digest is the image info's)."""
    try:
        members = _members(archive)
        listing = json.loads(_member(archive, members.get("manifest.json"), "manifest.json"))
        if not isinstance(listing, list) or not listing or not isinstance(listing[0], dict):
            raise LocalImageError(f"{archive}: manifest.json lists no image")
        entry = listing[0]
        config = _member(archive, members.get(str(entry.get("Config", "")).lstrip("./")), "config")
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        layers = []
        for name in entry.get("Layers") or []:
            where = members.get(str(name).lstrip("./"))
            if where is None:
                raise LocalImageError(f"{archive}: layer {name!r} not in the archive")
            # the digest is computed, never taken from the file name: it keys the cache
            digest = blob_digest(archive, *where)
            layers.append(LayerInput(digest, archive, *where))
    except LocalImageError:
        raise
    except (OSError, LayerError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LocalImageError(f"{archive}: {exc}") from None
    tags = entry.get("RepoTags") or []
    name = str(tags[0]).rsplit(":", 1)[0] if tags else archive.stem
    info = ImageInfo(name=name, digest=config_digest)
    return (layers, info, config) if with_config else (layers, info)
