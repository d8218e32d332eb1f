"""Authentication helpers shared by adapters."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def bearer_matches(headers: Mapping[str, str], secret: str) -> bool:
    """``Authorization: Bearer <secret>``, compared in constant time."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token or not secret:
        return False
    return hmac.compare_digest(token.strip().encode(), secret.encode())
