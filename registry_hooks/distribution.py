"""CNCF distribution notifications (``docker-registry``, distribution 2.x and 3.x).

Source: https://distribution.github.io/distribution/about/notifications/ and distribution's
``notifications/event.go``.
Envelope ``{"events": [...]}`` with media type
``application/vnd.docker.distribution.events.v1+json`` (2.x) or ``…events.v2+json`` (3.x); one or
many events. Manifest and index pushes become push events, manifest deletions become deletions
(a delete event names only ``repository`` and ``digest``); blob events, pulls and mounts are
ignored with a reason. Authentication is a static ``Authorization: Bearer <token>`` header set in
the registry's endpoint configuration; distribution signs nothing, so there is no signed time.

GitLab: project webhooks have no container registry event (gitlab-org/gitlab issues 15385 and
32950 are open requests). A self-managed GitLab's registry is a distribution registry: configure
its ``notifications`` endpoint (``registry['notifications']`` in ``gitlab.rb``) to this adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from registry_hooks._common import array, child, iso_time, load_object, make_event, text
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.interface import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Delivery,
    HookAdapter,
    HookError,
    HookEvent,
)

ENVELOPE_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)


class DistributionAdapter(BearerTokenAuth, HookAdapter):
    """Adapter for CNCF distribution's notification envelopes."""

    name = "distribution"

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        media = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if media and media not in ENVELOPE_TYPES:
            raise HookError(f"unsupported content type {media[:100]!r}")
        envelope = load_object(body)
        if not isinstance(envelope.get("events"), list):
            raise HookError('body must be an envelope {"events": [...]}')
        events: list[HookEvent] = []
        ignored: list[str] = []
        for index, event in enumerate(array(envelope["events"], "events")):
            if not isinstance(event, dict):
                raise HookError(f"event {index} is not an object")
            found = target_event(event, f"event {index}", self.name)
            if isinstance(found, str):
                ignored.append(found)
            else:
                events.append(found)
        if not events and not ignored:
            ignored.append("the envelope holds no events")
        return Delivery(tuple(events), tuple(ignored))


def target_event(event: dict[str, Any], where: str, source: str) -> HookEvent | str:
    """One distribution-shaped event (``action``, ``target``, ``request``; ACR sends the same
    shape): a push or delete event, or the reason it is ignored."""
    target = event.get("target")
    if not isinstance(target, dict):
        raise HookError(f"{where} has no target object")
    action = text(event.get("action"), "action", 32)
    media_type = text(target.get("mediaType"), "target.mediaType", 255)
    if action == "push" and media_type not in MANIFEST_TYPES | INDEX_TYPES:
        return f"{where}: push of {media_type or 'an untyped blob'!r} is not a manifest"
    if action not in ("push", "delete"):
        return f"{where}: action {action!r} is neither push nor delete"
    return make_event(
        source=source,
        where=where,
        event_id=text(event.get("id"), "id", 255),
        registry=_host(event, target),
        repository=text(target.get("repository"), "target.repository", 4096),
        digest=text(target.get("digest"), "target.digest", 4096),
        tag=text(target.get("tag"), "target.tag", 4096),
        media_type=media_type,
        action="push" if action == "push" else "delete",
        need_digest=action == "push",
        actor=text(child(event, "actor").get("name"), "actor.name", 255),
        time=iso_time(event.get("timestamp"), "timestamp"),
    )


def _host(event: dict[str, Any], target: dict[str, Any]) -> str | None:
    request = event.get("request")
    if isinstance(request, dict):
        host = text(request.get("host"), "request.host", 255)
        if host:
            return host.lower()
    url = text(target.get("url"), "target.url", 2048)
    if url:
        try:
            return urlsplit(url).netloc.lower() or None
        except ValueError:
            raise HookError("target.url is not a URL") from None
    return None
