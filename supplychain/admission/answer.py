"""Writes ``admission.k8s.io/v1`` AdmissionReview responses.

A deny carries ``status.code`` 403 and a message naming each refused image; ``warnings`` are
shown by kubectl (audit mode); a mutation is a base64 JSONPatch (RFC 6902) with
``patchType: JSONPatch``, as Kubernetes requires.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from supplychain.admission.review import API_VERSION

__all__ = ["MAX_MESSAGE", "MAX_WARNINGS", "pin_patch", "response"]

MAX_MESSAGE = 4096
MAX_WARNINGS = 16
MAX_WARNING = 256


def pin_patch(replacements: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """A JSONPatch replacing each ``(pointer, pinned image)``."""
    return [{"op": "replace", "path": pointer, "value": image} for pointer, image in replacements]


def response(
    uid: str,
    allowed: bool,
    *,
    message: str | None = None,
    warnings: Sequence[str] = (),
    patch: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The AdmissionReview answering request ``uid``."""
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        answer["status"] = {
            "code": 403,
            "reason": "Forbidden",
            "message": (message or "denied by supplychain")[:MAX_MESSAGE],
        }
    elif message:
        answer["status"] = {"code": 200, "message": message[:MAX_MESSAGE]}
    if warnings:
        shown = [w[:MAX_WARNING] for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            shown.append(f"… and {len(warnings) - MAX_WARNINGS} more")
        answer["warnings"] = shown
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}
