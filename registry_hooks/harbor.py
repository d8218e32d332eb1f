"""Harbor webhooks, default JSON format and CloudEvents.

Source: https://goharbor.io/docs/latest/working-with-projects/project-configuration/configure-webhooks/
Default: ``{"type": "PUSH_ARTIFACT"|"DELETE_ARTIFACT"|…, "occur_at", "operator", "event_data":
{"resources": [{"digest", "tag", "resource_url"}], "repository": {"repo_full_name", …}}}``.
CloudEvents: ``{"specversion", "id", "type": "harbor.artifact.pushed"|…, "time", "operator",
"data": <event_data>}``. An artifact pushed by digest has ``tag`` set to the digest and a
``resource_url`` of ``host/repo@digest`` (the documentation's own example): that is a push with no
tag, not an error. Harbor sends the policy's auth header verbatim as ``Authorization``: configure
it as ``Bearer <secret>``. Harbor names no media type (the worker finds out) and signs nothing.
The default format has no event id: ``occur_at``, the digest and the position stand in for one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from registry_hooks._common import (
    array,
    child,
    iso_time,
    load_object,
    make_event,
    split_reference,
    text,
    unix_time,
)
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.grammar import valid_digest
from registry_hooks.interface import Delivery, HookAdapter, HookError, HookEvent

ACTIONS: dict[str, Literal["push", "delete"]] = {
    "PUSH_ARTIFACT": "push",
    "harbor.artifact.pushed": "push",
    "DELETE_ARTIFACT": "delete",
    "harbor.artifact.deleted": "delete",
}


class HarborAdapter(BearerTokenAuth, HookAdapter):
    """Adapter for Harbor's artifact push and delete notifications."""

    name = "harbor"

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        payload = load_object(body)
        kind = text(payload.get("type"), "type", 64)
        action = ACTIONS.get(kind or "")
        if action is None:
            return Delivery(ignored=(f"event type {kind!r} is not an artifact push or delete",))
        cloud = "data" in payload
        data = child(payload, "data") if cloud else child(payload, "event_data")
        repository = text(child(data, "repository").get("repo_full_name"), "repo_full_name", 4096)
        event_id = text(payload.get("id"), "id", 255)
        time = (
            iso_time(payload.get("time"), "time")
            if cloud
            else unix_time(payload.get("occur_at"), "occur_at")
        )
        actor = text(payload.get("operator"), "operator", 255)
        events: list[HookEvent] = []
        for index, resource in enumerate(array(data.get("resources"), "event_data.resources")):
            if not isinstance(resource, dict):
                raise HookError(f"resource {index} is not an object")
            events.append(
                self._resource(resource, index, repository, event_id, action, actor, time)
            )
        if not events:
            return Delivery(ignored=("the event lists no resources",), delivery_id=event_id)
        return Delivery(tuple(events), delivery_id=event_id)

    def _resource(
        self,
        resource: dict[str, Any],
        index: int,
        repository: str | None,
        event_id: str | None,
        action: Literal["push", "delete"],
        actor: str | None,
        time: datetime | None,
    ) -> HookEvent:
        where = f"resource {index}"
        url = text(resource.get("resource_url"), "resource_url", 4096)
        if url is None:
            raise HookError(f"{where} has no resource_url")
        host, path, _, _ = split_reference(url, where)
        digest = text(resource.get("digest"), "digest", 4096)
        tag = text(resource.get("tag"), "tag", 4096)
        if tag is not None and valid_digest(tag):
            if digest is not None and tag != digest:
                raise HookError(f"{where}: tag is a digest other than the artifact's")
            tag = None  # pushed by digest: Harbor repeats the digest as the tag
        if repository is not None and repository != path:
            raise HookError(f"{where}: resource_url names another repository than repo_full_name")
        key: str | None = None
        if event_id is not None:
            key = f"{event_id}:{index}"
        elif digest is not None:
            key = f"{action}:{time.isoformat() if time else ''}:{digest}:{index}"
        return make_event(
            source=self.name,
            where=where,
            event_id=key,
            registry=host,
            repository=repository or path,
            digest=digest,
            tag=tag,
            action=action,
            actor=actor,
            time=time,
            need_digest=action == "push",
        )
