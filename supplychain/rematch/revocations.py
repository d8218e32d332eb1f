"""Announcing revocations: an earlier ``allow`` that a rematch turned into ``deny``.

Every revocation is logged (a ``warning`` JSON line). When an outgoing webhook is configured
(``SUPPLYCHAIN_REVOCATION_WEBHOOK``; the URL comes from configuration only, never from anything a
registry or a user sent us), it is POSTed as JSON, signed with HMAC-SHA256 when a secret is set
(``X-Supplychain-Signature: sha256=<hex>`` over the exact body). The URL is checked like every URL
we follow (no link-local/metadata, unspecified, multicast or reserved address; ``http`` only to
loopback), redirects are not followed, and attempts are bounded. The URL and secret are never
logged: only the host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import requests

from supplychain.registry.errors import NotAllowedError
from supplychain.registry.network import check_outbound_url
from supplychain.registry.transport import checked_session

__all__ = ["AnnounceError", "Announcer", "LogAnnouncer", "Revocation", "WebhookAnnouncer"]

log = logging.getLogger("supplychain.rematch.revocations")


class AnnounceError(Exception):
    """A revocation could not be delivered (it stays recorded with this reason)."""


@dataclass(frozen=True)
class Revocation:
    """One verdict changed by a rematch, as announced."""

    change_id: int
    """Id of the ``verdict_changes`` row."""
    image: str
    """``registry/repository@digest``."""
    previous: str | None
    """The decision before (``allow`` for a revocation)."""
    decision: str
    """The decision now."""
    reasons: tuple[str, ...]
    """The new verdict's reasons."""
    db_digest: str | None
    """SHA-256 of the advisory DB that caused the change."""
    at: str
    """When it was decided (ISO 8601, UTC)."""

    def body(self) -> bytes:
        """The JSON body announced."""
        data = {"event": "verdict.revoked", **asdict(self), "reasons": list(self.reasons)}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class Announcer(ABC):
    """Tells the world about a revocation."""

    @abstractmethod
    def announce(self, revocation: Revocation) -> None:
        """Deliver ``revocation``; raise :class:`AnnounceError` when it could not be."""


class LogAnnouncer(Announcer):
    """Only the log line (no webhook configured)."""

    def announce(self, revocation: Revocation) -> None:
        log.warning(
            "verdict revoked",
            extra={"image": revocation.image, "change_id": revocation.change_id},
        )


class WebhookAnnouncer(LogAnnouncer):
    """The log line, then a signed POST to the configured URL, with bounded retries."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        attempts: int = 3,
        timeout: float = 10.0,
        backoff: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise AnnounceError("revocation webhook: only http(s) URLs with a host")
        self._url = url
        self.host = parts.hostname
        self._secret = secret.encode() if secret else None
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self._session = session or checked_session()

    def __repr__(self) -> str:  # never shows the URL (it may carry a token) or the secret
        return f"WebhookAnnouncer(host={self.host!r})"

    def announce(self, revocation: Revocation) -> None:
        super().announce(revocation)
        try:
            check_outbound_url(self._url)
        except NotAllowedError as exc:
            raise AnnounceError(f"revocation webhook refused: {exc}") from None
        body = revocation.body()
        headers = {"Content-Type": "application/json", "User-Agent": "supplychain"}
        if self._secret is not None:
            mac = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers["X-Supplychain-Signature"] = f"sha256={mac}"
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session.post(
                    self._url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                last = type(exc).__name__
                continue
            if 200 <= response.status_code < 300:
                return
            last = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the receiver refuses it: retrying will not help
        log.error("revocation webhook failed", extra={"host": self.host, "error": last})
        raise AnnounceError(f"revocation webhook to {self.host} failed: {last}")
