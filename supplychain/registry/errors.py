"""Errors of the registry client; all are :class:`~supplychain.interface.SourceError`.

Messages name hosts, repositories and digests only: never a token, password or query string.
"""

from __future__ import annotations

from supplychain.interface import SourceError

__all__ = [
    "AuthError",
    "BlobTooLargeError",
    "DigestMismatchError",
    "NotAllowedError",
    "NotFoundError",
    "RegistryError",
    "RegistryUnavailableError",
]


class RegistryError(SourceError):
    """A registry request failed or its answer did not verify."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached or answered 5xx/429: its fault, not the image's."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds a 429 or 503 answer's ``Retry-After`` asked us to wait, when it said."""


class DigestMismatchError(RegistryError):
    """Fetched bytes do not hash to (or are not the size of) the digest they were asked for."""


class NotAllowedError(RegistryError):
    """A host outside the registry allowlist, or a URL we refuse to follow (realm, redirect)."""


class NotFoundError(RegistryError):
    """The registry answered 404 for a manifest or blob."""


class BlobTooLargeError(RegistryError):
    """A manifest, blob or token response is over its size limit."""


class AuthError(RegistryError):
    """Authentication or authorization at the registry or its token server failed."""


class NotAnImageError(RegistryError):
    """The manifest is an artifact (a signature, attestation, bundle…), not a container image."""
