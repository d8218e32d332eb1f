"""CNCF distribution notifications (``docker-registry``, distribution 2.x and 3.x).

Envelope ``{"events": [...]}`` with media type
``application/vnd.docker.distribution.events.v1+json`` (2.x) or ``…events.v2+json`` (3.x); one or
many events. Only pushes of manifests and indexes become work; blob events and other actions are
dropped. Authentication is a static ``Authorization: Bearer <token>`` header set in the registry's
endpoint configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from registry_hooks._common import load_object, push_event, text
from registry_hooks.auth import bearer_matches
from registry_hooks.interface import INDEX_TYPES, MANIFEST_TYPES, HookAdapter, HookError, PushEvent

ENVELOPE_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)
MAX_EVENTS = 1000


class DistributionAdapter(HookAdapter):
    """Adapter for CNCF distribution's notification envelopes."""

    name = "distribution"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return bearer_matches(headers, secret)

    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        media = (content_type or "").split(";")[0].strip().lower()
        if media and media not in ENVELOPE_TYPES:
            raise HookError(f"unsupported content type {media!r}")
        envelope = load_object(body)
        if not isinstance(envelope.get("events"), list):
            raise HookError('body must be an envelope {"events": [...]}')
        events = envelope["events"]
        if len(events) > MAX_EVENTS:
            raise HookError(f"at most {MAX_EVENTS} events per envelope")
        pushes = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise HookError(f"event {index} is not an object")
            push = self._push(event, index)
            if push is not None:
                pushes.append(push)
        return pushes

    def _push(self, event: dict[str, Any], index: int) -> PushEvent | None:
        target = event.get("target")
        if not isinstance(target, dict):
            raise HookError(f"event {index} has no target object")
        media_type = text(target.get("mediaType"), "target.mediaType", 255)
        if event.get("action") != "push" or media_type not in MANIFEST_TYPES | INDEX_TYPES:
            return None
        return push_event(
            event_id=text(event.get("id"), "id", 255),
            registry=self._host(event, target),
            repository=text(target.get("repository"), "target.repository", 255),
            digest=text(target.get("digest"), "target.digest", 71),
            tag=text(target.get("tag"), "target.tag", 128),
            media_type=media_type,
            where=f"event {index}",
        )

    @staticmethod
    def _host(event: dict[str, Any], target: dict[str, Any]) -> str | None:
        request = event.get("request")
        if isinstance(request, dict):
            host = text(request.get("host"), "request.host", 255)
            if host:
                return host.lower()
        url = text(target.get("url"), "target.url", 2048)
        if url:
            return urlsplit(url).netloc.lower() or None
        return None
