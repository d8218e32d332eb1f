"""The interface every registry webhook adapter implements.

An adapter turns one webhook request into a :class:`Delivery`: normalised push and delete
events, and a reason for everything it ignored. It never fetches anything named by a payload:
the pull target is built later from the service's registry allowlist. Every string in an event
has passed :mod:`registry_hooks.grammar` (no control or bidi characters, reference grammar).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from registry_hooks.mediatypes import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES

__all__ = [
    "RESOLVE_DIGEST",
    "Delivery",
    "HookAdapter",
    "HookError",
    "HookEvent",
    "PushEvent",
]

MANIFEST_TYPES = frozenset(MANIFEST_MEDIA_TYPES)
INDEX_TYPES = frozenset(INDEX_MEDIA_TYPES)
RESOLVE_DIGEST = "resolve the digest at the registry before use"
"""The note on an event that names a tag only: the tag may have moved since."""


class HookError(ValueError):
    """A webhook body that cannot be read; the message says why (never echoes secrets)."""


@dataclass(frozen=True)
class HookEvent:
    """One manifest or index pushed to, or deleted from, a registry, as a webhook reported it."""

    event_id: str | None
    """The sender's id for the event, used to drop repeated deliveries."""
    registry: str | None
    """Registry host[:port] the payload names; checked against the allowlist, never fetched."""
    repository: str
    """Repository path."""
    digest: str | None
    """Manifest digest, when the payload carries one (some formats only name tags)."""
    tag: str | None
    """Tag pushed or deleted, if any."""
    media_type: str | None
    """Manifest media type, when given."""
    action: Literal["push", "delete"] = "push"
    """``push`` becomes a scan job; ``delete`` is recorded, never scanned."""
    actor: str | None = None
    """Who pushed or deleted, as the sender names them (display only)."""
    time: datetime | None = None
    """When it happened, as the sender says (UTC); signed only where :attr:`Delivery.signed_at`."""
    source: str = ""
    """Name of the adapter that read the event."""
    note: str | None = None
    """What the consumer must do before use (:data:`RESOLVE_DIGEST` for tag-only events)."""

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


PushEvent = HookEvent
"""The name this type had when adapters reported pushes only."""


@dataclass(frozen=True)
class Delivery:
    """Everything one webhook request said."""

    events: tuple[HookEvent, ...] = ()
    """Pushes and deletions, in payload order."""
    ignored: tuple[str, ...] = ()
    """Why each part of the payload that is not an event was ignored; never empty when
    :attr:`events` is."""
    delivery_id: str | None = None
    """The sender's id for the whole request (``X-GitHub-Delivery``, SNS ``MessageId``…)."""
    signed_at: datetime | None = None
    """The send time covered by the sender's signature, when it signs one (SNS ``Timestamp``)."""
    confirm_url: str | None = None
    """SNS subscription confirmation URL; set only after it passed the SNS host check."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Sender-specific facts worth storing (topic ARN, subscription…)."""

    @property
    def pushes(self) -> tuple[HookEvent, ...]:
        """The push events: each becomes a job once its registry is allowed."""
        return tuple(event for event in self.events if event.action == "push")

    @property
    def deletions(self) -> tuple[HookEvent, ...]:
        """The delete events: recorded, never scanned."""
        return tuple(event for event in self.events if event.action == "delete")


class HookAdapter(ABC):
    """Reads one registry's webhook format."""

    name: str
    """Short name used in the URL ``/v1/hooks/<name>`` and in stored deliveries."""

    @abstractmethod
    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """True when the request proves its origin (``secret`` compared in constant time, or the
        sender's signature checked); ``headers`` keys are lower case. Never raises."""

    @abstractmethod
    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Everything in the request. Raise :class:`HookError` if it is malformed."""

    def parse(self, body: bytes, content_type: str | None) -> list[HookEvent]:
        """The push events of :meth:`read` (deletions and ignored parts left out)."""
        headers = {"content-type": content_type} if content_type else {}
        return list(self.read(headers, body).pushes)
