"""The interface every registry webhook adapter implements.

An adapter turns one webhook request into push events. It never fetches anything: the pull
target is built later from the service's registry allowlist, not from URLs in the payload.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from supplychain.mediatypes import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES

__all__ = ["HookAdapter", "HookError", "PushEvent"]

MANIFEST_TYPES = frozenset(MANIFEST_MEDIA_TYPES)
INDEX_TYPES = frozenset(INDEX_MEDIA_TYPES)


class HookError(ValueError):
    """A webhook body that cannot be read; the message says why (never echoes secrets)."""


@dataclass(frozen=True)
class PushEvent:
    """A manifest or index pushed to a registry, as a webhook reported it."""

    event_id: str | None
    """The sender's id for the event, used to drop repeated deliveries."""
    registry: str | None
    """Registry host[:port] the payload names; checked against the allowlist, never fetched."""
    repository: str
    """Repository path."""
    digest: str | None
    """Manifest digest, when the payload carries one (some formats only name tags)."""
    tag: str | None
    """Tag pushed, if any."""
    media_type: str | None
    """Manifest media type, when given."""

    @property
    def is_index(self) -> bool:
        """True for an image index / manifest list (fans out to one image per platform)."""
        return self.media_type in INDEX_TYPES

    @property
    def job_kind(self) -> str:
        """``index``, ``image``, or ``manifest`` when the payload does not say which."""
        if self.is_index:
            return "index"
        return "image" if self.media_type in MANIFEST_TYPES else "manifest"


class HookAdapter(ABC):
    """Reads one registry's webhook format."""

    name: str
    """Short name used in the URL ``/v1/hooks/<name>`` and in stored deliveries."""

    @abstractmethod
    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """True when the request proves knowledge of ``secret`` (constant-time comparison)."""

    @abstractmethod
    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        """Push events in ``body``; others are dropped. Raise :class:`HookError` if malformed."""
