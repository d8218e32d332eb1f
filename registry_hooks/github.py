"""GitHub Packages ``registry_package`` (``published``) webhooks for container images on ghcr.io.

Authenticated by ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`` compared in
constant time, as GitHub documents. The image is named by ``package_version.package_url``
(``ghcr.io/owner/name:tag``) and ``container_metadata.tag.digest``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from registry_hooks._common import child, load_object, push_event, split_reference, text
from registry_hooks.interface import HookAdapter, PushEvent


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GitHubAdapter(HookAdapter):
    """Adapter for GitHub's registry package events."""

    name = "github"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        sent = headers.get("x-hub-signature-256", "")
        if not secret or not sent:
            return False
        return hmac.compare_digest(sent.encode(), github_signature(secret, body).encode())

    def parse(self, body: bytes, content_type: str | None) -> list[PushEvent]:
        payload = load_object(body)
        if payload.get("action") != "published":
            return []
        package = child(payload, "registry_package")
        if str(package.get("package_type", "")).upper() != "CONTAINER":
            return []
        version = child(package, "package_version")
        metadata = child(version, "container_metadata")
        tag = child(metadata, "tag")
        url = text(version.get("package_url"), "package_url", 2048) or ""
        host, path = split_reference(url, "package_version.package_url")
        digest = text(tag.get("digest"), "tag.digest", 71) or text(
            version.get("version"), "version", 71
        )
        media_type = text(child(metadata, "manifest").get("media_type"), "manifest.media_type", 255)
        return [
            push_event(
                event_id=str(version.get("id")) if version.get("id") is not None else None,
                registry=host,
                repository=path.lower(),
                digest=digest,
                tag=text(tag.get("name"), "tag.name", 128),
                media_type=media_type,
                where="registry_package",
            )
        ]
