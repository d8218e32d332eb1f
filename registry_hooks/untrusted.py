"""Untrusted JSON: one object, no duplicate keys, no NaN/Infinity, no crash on deep nesting.

Python's ``json`` accepts duplicate keys (the last wins: a parser differential between us and the
sender or a registry), the non-standard ``NaN``/``Infinity``, and raises ``RecursionError`` — not a
``ValueError`` — on deeply nested input. Here every one of those is the caller's error type.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["json_object"]


class _Refused(ValueError):
    """Raised from inside the decoder hooks; turned into the caller's error type."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _Refused(f"duplicate key {key[:64]!a}")
        document[key] = value
    return document


def _constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
"""One decoder for every body (``json.loads`` with hooks makes one per call)."""


def json_object(data: bytes, what: str, error: type[Exception]) -> dict[str, Any]:
    """``data`` as a JSON object, else ``error`` naming ``what`` and the reason."""
    try:  # as json.loads reads bytes: UTF-8, -16 or -32, told apart by the first bytes
        document = _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except _Refused as exc:
        raise error(f"{what} is not acceptable JSON: {exc}") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not JSON: {getattr(exc, 'msg', type(exc).__name__)}") from None
    if not isinstance(document, dict):
        raise error(f"{what} is not a JSON object")
    return document
