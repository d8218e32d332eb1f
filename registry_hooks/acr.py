"""Azure Container Registry webhooks: one event object (no envelope).

Source: https://learn.microsoft.com/azure/container-registry/container-registry-webhook-reference
``{"id", "timestamp", "action": "push"|"delete"|"chart_push"|…, "target": {"mediaType", "digest",
"repository", "tag"}, "request": {"host", …}}``: the shape of one distribution event, read by
:func:`registry_hooks.distribution.target_event`. ``push`` of a manifest becomes a push event,
``delete`` a deletion; other actions (charts, quarantine) are ignored with a reason. ACR webhooks
send configured custom headers: set ``Authorization: Bearer <secret>``. ACR signs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import load_object
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.distribution import target_event
from registry_hooks.interface import Delivery, HookAdapter


class AcrAdapter(BearerTokenAuth, HookAdapter):
    """Adapter for Azure Container Registry push and delete events."""

    name = "acr"

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        found = target_event(load_object(body), "event", self.name)
        if isinstance(found, str):
            return Delivery(ignored=(found,))
        return Delivery((found,), delivery_id=found.event_id)
