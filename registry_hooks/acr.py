"""Azure Container Registry webhooks: one event object (no envelope), action ``push``.

``{"id", "timestamp", "action": "push", "target": {"mediaType", "digest", "repository", "tag"},
"request": {"host", …}}``. ACR webhooks send configured custom headers: set
``Authorization: Bearer <SUPPLYCHAIN_WEBHOOK_TOKEN>``.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import child, load_object, push_event, text
from registry_hooks.auth import bearer_matches
from registry_hooks.interface import INDEX_TYPES, MANIFEST_TYPES, HookAdapter, PushEvent


class AcrAdapter(HookAdapter):
    """Adapter for Azure Container Registry push events."""

    name = "acr"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return bearer_matches(headers, secret)

    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        event = load_object(body)
        target = child(event, "target")
        media_type = text(target.get("mediaType"), "target.mediaType", 255)
        if event.get("action") != "push" or media_type not in MANIFEST_TYPES | INDEX_TYPES:
            return []
        return [
            push_event(
                event_id=text(event.get("id"), "id", 255),
                registry=text(child(event, "request").get("host"), "request.host", 255),
                repository=text(target.get("repository"), "target.repository", 255),
                digest=text(target.get("digest"), "target.digest", 71),
                tag=text(target.get("tag"), "target.tag", 128),
                media_type=media_type,
                where="event",
            )
        ]
