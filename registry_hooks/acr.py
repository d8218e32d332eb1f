"""Azure Container Registry webhooks: one event object (no envelope).

Source: https://learn.microsoft.com/azure/container-registry/container-registry-webhook-reference
``{"id", "timestamp", "action": "push"|"delete"|"chart_push"|…, "target": {"mediaType", "digest",
"repository", "tag"}, "request": {"host", …}}``. ``push`` of a manifest becomes a push event,
``delete`` a deletion; other actions (charts, quarantine) are ignored with a reason. ACR webhooks
send configured custom headers: set ``Authorization: Bearer <secret>``. ACR signs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import child, iso_time, load_object, make_event, text
from registry_hooks.auth import bearer_matches
from registry_hooks.interface import INDEX_TYPES, MANIFEST_TYPES, Delivery, HookAdapter


class AcrAdapter(HookAdapter):
    """Adapter for Azure Container Registry push and delete events."""

    name = "acr"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return bearer_matches(headers, secret)

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        event = load_object(body)
        target = child(event, "target")
        action = text(event.get("action"), "action", 32)
        media_type = text(target.get("mediaType"), "target.mediaType", 255)
        if action not in ("push", "delete"):
            return Delivery(ignored=(f"action {action!r} is neither push nor delete",))
        if action == "push" and media_type not in MANIFEST_TYPES | INDEX_TYPES:
            return Delivery(ignored=(f"push of {media_type!r} is not an image manifest",))
        found = make_event(
            source=self.name,
            where="event",
            event_id=text(event.get("id"), "id", 255),
            registry=text(child(event, "request").get("host"), "request.host", 255),
            repository=text(target.get("repository"), "target.repository", 4096),
            digest=text(target.get("digest"), "target.digest", 4096),
            tag=text(target.get("tag"), "target.tag", 4096),
            media_type=media_type,
            action="push" if action == "push" else "delete",
            need_digest=action == "push",
            time=iso_time(event.get("timestamp"), "timestamp"),
        )
        return Delivery((found,), delivery_id=found.event_id)
