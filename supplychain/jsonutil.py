"""Untrusted JSON: a document must be an object; any failure raises the caller's error type."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_object"]


def json_object(data: bytes, what: str, error: type[Exception]) -> dict[str, Any]:
    """``data`` as a JSON object, else ``error`` naming ``what`` (not JSON, or not an object)."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(document, dict):
        raise error(f"{what} is not a JSON object")
    return document
