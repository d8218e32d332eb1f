"""The CLI's HTTP client for the service: POST a JSON request, read the answer failing closed.

Standard library only, imported by ``supplychain gate`` on every deploy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_ANSWER", "post_json", "read_answer", "read_token"]

MAX_ANSWER = 4 * 1024 * 1024
"""Bytes of an answer read at most."""


def post_json(
    url: str, body: dict[str, Any], timeout: float, token: str | None = None
) -> dict[str, Any]:
    """POST JSON; the answer as a dict, and any non-2xx answer as ``decision: error``.

    Standard library only: `supplychain gate` runs on every deploy, and importing requests alone
    costs about as much as the gate's answer.
    """
    import urllib.error  # only `gate` and `admit` talk HTTP: other commands start faster
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")  # noqa: S310 - caller checks http(s)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, data = response.status, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read(MAX_ANSWER)
    return read_answer(status, data)


def read_answer(status: int, data: bytes) -> dict[str, Any]:
    """The server's answer; fails closed: a non-2xx answer is an error whatever its body says."""
    try:
        answer = json.loads(data)
    except ValueError:  # not JSON (a proxy's error page…), or not UTF-8
        answer = None
    if 200 <= status < 300:
        if isinstance(answer, dict):
            return answer
        return {"decision": "error", "error": "gate answered something that is not a JSON object"}
    reason = answer.get("error") or answer.get("detail") if isinstance(answer, dict) else None
    if not reason:
        text = data[:200].decode("utf-8", "replace")
        reason = "".join(c if c.isprintable() else " " for c in text).strip() or "no reason given"
    return {"decision": "error", "error": f"gate answered HTTP {status}: {reason}"}


def read_token(token_file: Path | None) -> str | None:
    """The API token: ``--token-file``'s first line, else ``SUPPLYCHAIN_TOKEN``."""
    if token_file is None:
        return os.environ.get("SUPPLYCHAIN_TOKEN", "").strip() or None
    try:
        return token_file.read_text(encoding="utf-8").strip().splitlines()[0].strip() or None
    except (OSError, UnicodeDecodeError, IndexError):
        raise ValueError(f"--token-file {token_file}: unreadable or empty") from None
