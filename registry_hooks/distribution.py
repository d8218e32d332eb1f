"""CNCF distribution notifications (``docker-registry``, distribution 2.x and 3.x).

Envelope ``{"events": [...]}`` with media type
``application/vnd.docker.distribution.events.v1+json`` (2.x) or ``…events.v2+json`` (3.x); one or
many events. Only pushes of manifests and indexes become work; blob events and other actions are
dropped. Authentication is a static ``Authorization: Bearer <token>`` header set in the registry's
endpoint configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from registry_hooks.auth import bearer_matches
from registry_hooks.interface import INDEX_TYPES, MANIFEST_TYPES, HookAdapter, HookError, PushEvent
from supplychain.reference import valid_digest, valid_repository, valid_tag

ENVELOPE_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)
MAX_EVENTS = 1000


def _text(value: Any, field: str, limit: int = 1024) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HookError(f"event field {field} must be a string of at most {limit} characters")
    return value


class DistributionAdapter(HookAdapter):
    """Adapter for CNCF distribution's notification envelopes."""

    name = "distribution"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return bearer_matches(headers, secret)

    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        media = (content_type or "").split(";")[0].strip().lower()
        if media and media not in ENVELOPE_TYPES:
            raise HookError(f"unsupported content type {media!r}")
        try:
            envelope = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HookError(
                f"body is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
            ) from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
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
        media_type = _text(target.get("mediaType"), "target.mediaType", 255)
        if event.get("action") != "push" or media_type not in MANIFEST_TYPES | INDEX_TYPES:
            return None
        repository = _text(target.get("repository"), "target.repository", 255)
        digest = _text(target.get("digest"), "target.digest", 71)
        tag = _text(target.get("tag"), "target.tag", 128)
        if repository is None or not valid_repository(repository):
            raise HookError(f"event {index}: invalid repository")
        if digest is None or not valid_digest(digest):
            raise HookError(f"event {index}: target.digest must be sha256:<64 hex>")
        if tag is not None and not valid_tag(tag):
            raise HookError(f"event {index}: invalid tag")
        return PushEvent(
            event_id=_text(event.get("id"), "id", 255),
            registry=self._host(event, target),
            repository=repository,
            digest=digest,
            tag=tag,
            media_type=media_type,
        )

    @staticmethod
    def _host(event: dict[str, Any], target: dict[str, Any]) -> str | None:
        request = event.get("request")
        if isinstance(request, dict):
            host = _text(request.get("host"), "request.host", 255)
            if host:
                return host.lower()
        url = _text(target.get("url"), "target.url", 2048)
        if url:
            return urlsplit(url).netloc.lower() or None
        return None
