"""Manifest media types (OCI image spec ``media-types.md``, Docker's registry v2 formats)."""

from __future__ import annotations

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
"""Single-platform image manifests."""
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
"""Multi-platform indexes."""
