"""Pulling images by digest from OCI registries, every byte verified.

:class:`RegistryClient` talks to allowlisted registries (token and basic auth), :class:`BlobCache`
keeps verified blobs, :func:`parse_index` reads an image index as a runtime reads it. The
pipeline's image source is :mod:`supplychain.stages.source`.
"""

from __future__ import annotations

from supplychain.registry.auth import (
    Authenticator,
    Challenge,
    Credentials,
    CredentialStore,
    DockerConfigCredentials,
    StaticCredentials,
    docker_credentials,
    parse_www_authenticate,
)
from supplychain.registry.cache import BlobCache, check_digest
from supplychain.registry.client import Descriptor, Manifest, RegistryClient
from supplychain.registry.errors import (
    AuthError,
    BlobTooLargeError,
    DigestMismatchError,
    NotAllowedError,
    NotAnImageError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
)
from supplychain.registry.index import IndexEntry, is_attestation_manifest, parse_index
from supplychain.registry.layout import write_layout
from supplychain.registry.network import check_outbound_url, is_loopback_host

__all__ = [
    "AuthError",
    "Authenticator",
    "BlobCache",
    "BlobTooLargeError",
    "Challenge",
    "CredentialStore",
    "Credentials",
    "Descriptor",
    "DigestMismatchError",
    "DockerConfigCredentials",
    "IndexEntry",
    "Manifest",
    "NotAllowedError",
    "NotAnImageError",
    "NotFoundError",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailableError",
    "StaticCredentials",
    "check_digest",
    "check_outbound_url",
    "docker_credentials",
    "is_attestation_manifest",
    "is_loopback_host",
    "parse_index",
    "parse_www_authenticate",
    "write_layout",
]
