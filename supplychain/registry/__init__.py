"""Pulling images by digest from OCI registries, every byte verified.

:class:`RegistryClient` talks to allowlisted registries (token and basic auth), :class:`BlobCache`
keeps verified blobs, :class:`RegistrySource` is the pipeline's image source writing an OCI layout.
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
)
from supplychain.registry.layout import write_layout
from supplychain.registry.network import check_outbound_url, is_loopback_host
from supplychain.registry.source import RegistrySource, platform_manifests

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
    "Manifest",
    "NotAllowedError",
    "NotAnImageError",
    "NotFoundError",
    "RegistryClient",
    "RegistryError",
    "RegistrySource",
    "StaticCredentials",
    "check_digest",
    "check_outbound_url",
    "docker_credentials",
    "is_loopback_host",
    "parse_www_authenticate",
    "platform_manifests",
    "write_layout",
]
