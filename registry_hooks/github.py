"""GitHub Packages ``package`` and ``registry_package`` webhooks for container images.

Sources: https://docs.github.com/en/webhooks/webhook-events-and-payloads#package and
#registry_package; payload examples from octokit/webhooks ``payload-examples/api.github.com/``
``package/published.docker.payload.json`` and ``registry_package/published.docker.payload.json``;
signature: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries.

Authenticated by ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`` compared in
constant time. ``X-GitHub-Event`` says which event (``package``, ``registry_package``; anything
else is ignored with a reason); ``X-GitHub-Delivery`` is the delivery id (GitHub keeps it on a
redelivery). A container is ``package_type`` ``container`` (ghcr.io) or ``docker`` (images
migrated from docker.pkg.github.com), any case. The image is ``package_version.package_url``
(``ghcr.io/owner/name:tag``); its digest is stated up to four times (``container_metadata.tag
.digest``, ``container_metadata.manifest.digest``, ``version``, ``name``): every one present must be
a valid digest and all must agree. GitHub signs no timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from registry_hooks._common import child, iso_time, load_object, make_event, split_reference, text
from registry_hooks.grammar import valid_digest
from registry_hooks.interface import Delivery, HookAdapter, HookError

CONTAINER_TYPES = frozenset({"container", "docker"})
"""``package_type`` values of container images (compared lower-cased)."""
EVENT_KEYS = {"package": "package", "registry_package": "registry_package"}
"""``X-GitHub-Event`` value → key of the package object in the payload."""


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _lower_path(url: str) -> str:
    """``ghcr.io/Owner/App:Tag`` → ``ghcr.io/owner/app:Tag``: GitHub keeps the owner's case in
    ``package_url``, image names on ghcr.io are lowercase, tags keep their case."""
    rest, at, digest = url.partition("@")
    colon, slash = rest.rfind(":"), rest.rfind("/")
    name, tag = (rest[:colon], rest[colon:]) if colon > slash else (rest, "")
    host, _, path = name.partition("/")
    return f"{host}/{path.lower()}{tag}{at}{digest}"


class GitHubAdapter(HookAdapter):
    """Adapter for GitHub's package events."""

    name = "github"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        sent = headers.get("x-hub-signature-256", "")
        if not secret or not sent:
            return False
        return hmac.compare_digest(sent.encode(), github_signature(secret, body).encode())

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        delivery_id = text(headers.get("x-github-delivery"), "X-GitHub-Delivery", 128)
        kind = text(headers.get("x-github-event"), "X-GitHub-Event", 64)
        payload = load_object(body)
        if kind is None:  # header absent: infer from the payload
            kind = next((key for key in EVENT_KEYS if key in payload), None)
        if kind not in EVENT_KEYS:
            return Delivery(ignored=(f"event {kind!r} is not a package event",), delivery_id=None)
        action = text(payload.get("action"), "action", 32)
        if action not in ("published", "updated"):
            reason = f"{kind} action {action!r} is not a publication"
            return Delivery(ignored=(reason,), delivery_id=delivery_id)
        package = child(payload, EVENT_KEYS[kind])
        package_type = text(package.get("package_type"), "package_type", 64)
        if (package_type or "").lower() not in CONTAINER_TYPES:
            reason = f"package_type {package_type!r} is not a container image"
            return Delivery(ignored=(reason,), delivery_id=delivery_id)
        return self._container(package, kind, delivery_id, payload)

    def _container(
        self, package: dict[str, Any], kind: str, delivery_id: str | None, payload: dict[str, Any]
    ) -> Delivery:
        version = child(package, "package_version")
        metadata = child(version, "container_metadata")
        url = text(version.get("package_url"), "package_url", 4096)
        if url is None:
            raise HookError(f"{kind}: package_version.package_url is missing")
        host, path, tag, _ = split_reference(_lower_path(url), "package_url")
        tag = tag or text(child(metadata, "tag").get("name"), "tag.name", 4096)
        version_id = version.get("id")
        event_id = delivery_id or (f"version:{version_id}" if isinstance(version_id, int) else None)
        event = make_event(
            source=self.name,
            where=kind,
            event_id=event_id,
            registry=host,
            repository=path,
            digest=self._digest(version, metadata),
            tag=tag,
            media_type=text(
                child(metadata, "manifest").get("media_type"), "manifest.media_type", 255
            ),
            actor=text(child(payload, "sender").get("login"), "sender.login", 255),
            time=iso_time(package.get("updated_at"), "updated_at"),
        )
        return Delivery((event,), delivery_id=delivery_id)

    @staticmethod
    def _digest(version: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        fields = {
            "container_metadata.tag.digest": child(metadata, "tag").get("digest"),
            "container_metadata.manifest.digest": child(metadata, "manifest").get("digest"),
            "package_version.version": version.get("version"),
            "package_version.name": version.get("name"),
        }
        found: set[str] = set()
        for field, value in fields.items():
            value = text(value, field, 4096)
            if value is None:
                continue
            if not valid_digest(value):
                raise HookError(f"{field} {value[:80]!r} is not a sha256 digest")
            found.add(value)
        if len(found) > 1:
            raise HookError("the payload states different digests for the same version")
        return found.pop() if found else None
