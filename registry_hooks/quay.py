"""Quay repository notifications, event ``repo_push``: tags only.

Source: https://docs.redhat.com/en/documentation/red_hat_quay/3/html/use_red_hat_quay/
repository-events (Repository Push example). ``{"name", "repository": "ns/repo", "namespace",
"docker_url": "quay.io/ns/repo", "homepage", "updated_tags": ["latest", …]}``; older Quay sends
``updated_tags`` as an object ``{tag: image id}`` (the ids are not manifest digests and are not
used). Other notifications (builds, vulnerabilities) are ignored with a reason. Quay sends no
digest and no signature: the webhook URL's ``?token=<secret>`` is the intake's only proof, passed
on as ``Authorization: Bearer``. Each event carries :data:`RESOLVE_DIGEST`. There is no event id
(a tag pushed twice must be scanned twice), so no ``event_id`` is given.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry_hooks._common import MAX_ITEMS, load_object, make_event, split_reference, text
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.interface import RESOLVE_DIGEST, Delivery, HookAdapter, HookError


class QuayAdapter(BearerTokenAuth, HookAdapter):
    """Adapter for Quay ``repo_push`` notifications (unsigned, tags only)."""

    name = "quay"

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        payload = load_object(body)
        if "updated_tags" not in payload:
            return Delivery(ignored=("no updated_tags: not a repository push notification",))
        docker_url = text(payload.get("docker_url"), "docker_url", 4096)
        if docker_url is None:
            raise HookError("docker_url is missing")
        host, path, _, _ = split_reference(docker_url, "docker_url")
        repository = text(payload.get("repository"), "repository", 4096)
        if repository is not None and repository != path:
            raise HookError("docker_url names another repository than repository")
        tags = payload["updated_tags"]
        if isinstance(tags, dict):
            tags = list(tags)
        if not isinstance(tags, list) or len(tags) > MAX_ITEMS:
            raise HookError(f"updated_tags must list at most {MAX_ITEMS} tags")
        events = tuple(
            make_event(
                source=self.name,
                where=f"updated_tags[{index}]",
                registry=host,
                repository=path,
                tag=text(tag, f"updated_tags[{index}]", 4096),
                note=RESOLVE_DIGEST,
                need_digest=False,
            )
            for index, tag in enumerate(tags)
        )
        if not events:
            return Delivery(ignored=("updated_tags is empty",))
        for event in events:
            if event.tag is None:
                raise HookError("updated_tags holds an empty tag")
        return Delivery(events)
