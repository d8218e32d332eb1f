"""Manifest media types (OCI image spec and Docker's registry v2 formats).

The four manifest and index types live in :mod:`registry_hooks.mediatypes` (webhooks name them
too, and ``registry_hooks`` imports nothing from ``supplychain``); this module adds the rest.
"""

from __future__ import annotations

from registry_hooks.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

__all__ = [
    "ALL_MANIFEST_TYPES",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_CONFIG_TYPES",
    "INDEX_MEDIA_TYPES",
    "LAYER_TYPE_PREFIXES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
]

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
