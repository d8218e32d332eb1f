"""Harbor webhooks (``PUSH_ARTIFACT``), default JSON format and CloudEvents.

Default: ``{"type": "PUSH_ARTIFACT", "occur_at", "operator", "event_data": {"resources":
[{"digest", "tag", "resource_url"}], "repository": {"repo_full_name", …}}}``. CloudEvents:
``{"type": "harbor.artifact.pushed", "id", "data": <event_data>}``. Harbor sends the policy's
auth header verbatim as ``Authorization``: configure it as ``Bearer <SUPPLYCHAIN_WEBHOOK_TOKEN>``.
Harbor names no media type: the worker finds out whether the digest is an image or an index.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import child, load_object, push_event, split_reference, text
from registry_hooks.auth import bearer_matches
from registry_hooks.interface import HookAdapter, HookError, PushEvent

PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "harbor.artifact.pushed"})
MAX_RESOURCES = 1000


class HarborAdapter(HookAdapter):
    """Adapter for Harbor's artifact push notifications."""

    name = "harbor"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return bearer_matches(headers, secret)

    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        payload = load_object(body)
        if payload.get("type") not in PUSH_TYPES:
            return []
        data = child(payload, "data") if "data" in payload else child(payload, "event_data")
        resources = data.get("resources")
        if not isinstance(resources, list) or len(resources) > MAX_RESOURCES:
            raise HookError(f"event_data.resources must be a list of at most {MAX_RESOURCES}")
        repository = text(child(data, "repository").get("repo_full_name"), "repo_full_name", 255)
        event_id = text(payload.get("id"), "id", 255)
        events = []
        for index, resource in enumerate(resources):
            if not isinstance(resource, dict):
                raise HookError(f"resource {index} is not an object")
            url = text(resource.get("resource_url"), "resource_url", 2048)
            if url is None:
                raise HookError(f"resource {index} has no resource_url")
            host, path = split_reference(url, f"resource {index}")
            digest = text(resource.get("digest"), "digest", 71)
            events.append(
                push_event(
                    event_id=f"{event_id}:{index}" if event_id else None,
                    registry=host,
                    repository=repository or path,
                    digest=digest,
                    tag=text(resource.get("tag"), "tag", 128),
                    media_type=None,
                    where=f"resource {index}",
                )
            )
        return events
