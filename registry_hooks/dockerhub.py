"""Docker Hub repository webhooks: a push names a tag only.

Source: https://docs.docker.com/docker-hub/repos/manage/webhooks/ (example payload).
``{"callback_url", "push_data": {"pushed_at", "pusher", "tag"}, "repository": {"repo_name",
"namespace", "name", …}}``. Docker Hub sends no digest, no signature and no custom header: the
webhook URL is the only secret, so the intake must accept the token as ``?token=<secret>`` and
pass it on as ``Authorization: Bearer``. The event carries :data:`RESOLVE_DIGEST`: the tag may
have moved, so the consumer resolves it at the registry (by the allowlisted host, never the
payload's ``callback_url``, which is never fetched) and pins the digest it got.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import child, load_object, make_event, text, unix_time
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.interface import RESOLVE_DIGEST, Delivery, HookAdapter, HookError

REGISTRY = "docker.io"
"""Docker Hub's registry name, as image references write it."""


class DockerHubAdapter(BearerTokenAuth, HookAdapter):
    """Adapter for Docker Hub push webhooks (unsigned, tag only)."""

    name = "dockerhub"

    def __init__(self, registry: str = REGISTRY) -> None:
        self.registry = registry
        """Where the tags live: Docker Hub, or a pull-through mirror of it the operator names."""

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        payload = load_object(body)
        if "push_data" not in payload:
            return Delivery(ignored=("no push_data: not a Docker Hub push",))
        push = child(payload, "push_data")
        repository = child(payload, "repository")
        name = text(repository.get("repo_name"), "repository.repo_name", 4096)
        if name is None:
            raise HookError("repository.repo_name is missing")
        if "/" not in name:
            name = f"library/{name}"
        tag = text(push.get("tag"), "push_data.tag", 4096)
        if tag is None:
            raise HookError("push_data.tag is missing")
        pushed_at = unix_time(push.get("pushed_at"), "push_data.pushed_at")
        stamp = pushed_at.isoformat() if pushed_at else "unknown-time"
        event = make_event(
            source=self.name,
            where="push",
            event_id=f"{name}:{tag}:{stamp}",
            registry=self.registry,
            repository=name,
            tag=tag,
            actor=text(push.get("pusher"), "push_data.pusher", 255),
            time=pushed_at,
            note=RESOLVE_DIGEST,
            need_digest=False,
        )
        return Delivery((event,))
