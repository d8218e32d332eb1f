"""Parsing helpers shared by the adapters: bounded JSON fields, validated names."""

from __future__ import annotations

from typing import Any

from registry_hooks.interface import HookError, PushEvent
from supplychain.jsonutil import json_object
from supplychain.reference import valid_digest, valid_repository, valid_tag


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or :class:`HookError`."""
    return json_object(body, "body", HookError)


def text(value: Any, field: str, limit: int = 1024) -> str | None:
    """An optional string field of at most ``limit`` characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HookError(f"field {field} must be a string of at most {limit} characters")
    return value


def child(value: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field, or an empty one when absent (a wrong type is an error)."""
    found = value.get(key)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise HookError(f"field {key} must be an object")
    return found


def push_event(
    *,
    event_id: str | None,
    registry: str | None,
    repository: str | None,
    digest: str | None,
    tag: str | None,
    media_type: str | None,
    where: str,
) -> PushEvent:
    """A validated :class:`PushEvent`; ``where`` names the event in error messages."""
    if repository is None or not valid_repository(repository):
        raise HookError(f"{where}: invalid repository")
    if digest is None or not valid_digest(digest):
        raise HookError(f"{where}: digest must be sha256:<64 hex>")
    if tag is not None and not valid_tag(tag):
        raise HookError(f"{where}: invalid tag")
    host = registry.lower() if registry else None
    return PushEvent(event_id, host, repository, digest, tag, media_type)


def split_reference(reference: str, where: str) -> tuple[str, str]:
    """``host/path[:tag]`` (as Harbor and GitHub write it) → (host, path)."""
    host, _, path = reference.partition("/")
    if not host or not path:
        raise HookError(f"{where}: reference {reference[:100]!r} has no host/repository")
    if "@" in path:
        path = path.split("@", 1)[0]
    if ":" in path.rsplit("/", 1)[-1]:
        path = path.rsplit(":", 1)[0]
    return host, path
