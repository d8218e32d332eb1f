"""Manifest media types (OCI image spec and Docker's registry v2 formats)."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
"""Single-platform image manifests."""
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
"""Multi-platform indexes."""
ALL_MANIFEST_TYPES = MANIFEST_MEDIA_TYPES + INDEX_MEDIA_TYPES
"""Everything sent in ``Accept`` when fetching a manifest."""

IMAGE_CONFIG_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
"""Config media types of container images (artifacts use others, or an ``artifactType``)."""
LAYER_TYPE_PREFIXES = (
    "application/vnd.oci.image.layer.",
    "application/vnd.docker.image.rootfs.",
)
"""Filesystem layers; signatures, attestations and bundles use other layer types."""
