"""Parsing helpers shared by the adapters: bounded fields, grammar-checked names, times."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from registry_hooks.grammar import (
    GrammarError,
    check_digest,
    check_host,
    check_repository,
    check_tag,
    check_text,
    split_name,
)
from registry_hooks.interface import HookError, HookEvent
from registry_hooks.untrusted import json_object

MAX_ITEMS = 1000
"""Most events, resources or tags one delivery may carry."""


def load_object(body: bytes, what: str = "body") -> dict[str, Any]:
    """The body as a JSON object, or :class:`HookError`."""
    return json_object(body, what, HookError)


def text(value: Any, field: str, limit: int = 1024) -> str | None:
    """An optional string field of at most ``limit`` safe characters (empty means absent)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HookError(f"field {field} must be a string")
    try:
        return check_text(value, f"field {field}", limit)
    except GrammarError as exc:
        raise HookError(str(exc)) from None


def child(value: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field, or an empty one when absent (a wrong type is an error)."""
    found = value.get(key)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise HookError(f"field {key} must be an object")
    return found


def array(value: Any, field: str) -> list[Any]:
    """A list field of at most :data:`MAX_ITEMS` entries."""
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise HookError(f"field {field} must be a list of at most {MAX_ITEMS} entries")
    return value


def make_event(
    *,
    source: str,
    where: str,
    repository: str | None,
    registry: str | None = None,
    digest: str | None = None,
    tag: str | None = None,
    media_type: str | None = None,
    event_id: str | None = None,
    action: Literal["push", "delete"] = "push",
    actor: str | None = None,
    time: datetime | None = None,
    note: str | None = None,
    need_digest: bool = True,
) -> HookEvent:
    """A :class:`HookEvent` whose names passed the grammar; ``where`` names it in errors."""
    try:
        if repository is None:
            raise GrammarError("no repository")
        check_repository(repository)
        if registry is not None:
            check_host(registry)
        if digest is not None:
            check_digest(digest)
        elif need_digest:
            raise GrammarError("no digest")
        if tag is not None:
            check_tag(tag)
        for name, value in (("media type", media_type), ("id", event_id), ("actor", actor)):
            if value is not None:
                check_text(value, name, 255)
    except GrammarError as exc:
        raise HookError(f"{where}: {exc}") from None
    host = registry.lower() if registry else None
    return HookEvent(
        event_id, host, repository, digest, tag, media_type, action, actor, time, source, note
    )


def split_reference(reference: str, where: str) -> tuple[str, str, str | None, str | None]:
    """``host/path[:tag][@digest]`` → (host, path, tag, digest), each checked by the grammar."""
    rest, _, digest = reference.partition("@")
    tag = None
    colon, slash = rest.rfind(":"), rest.rfind("/")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    try:
        host, path = split_name(rest, where)
        if host is None:
            raise GrammarError(f"{where}: reference {reference[:64]!r} names no registry host")
        if tag:
            check_tag(tag, where)
        if digest:
            check_digest(digest, where)
    except GrammarError as exc:
        raise HookError(str(exc)) from None
    return host, path, tag or None, digest or None


def unix_time(value: Any, field: str) -> datetime | None:
    """Seconds since the epoch (JSON number) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HookError(f"field {field} must be a number of seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise HookError(f"field {field} is out of range") from None


def iso_time(value: Any, field: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 time string as an aware UTC datetime (naive means UTC)."""
    raw = text(value, field, 64)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HookError(f"field {field} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
