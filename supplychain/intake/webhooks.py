"""Webhook intake: authenticate, store the delivery durably, and turn pushes into jobs.

The delivery is committed before the 2xx goes back. Repeated deliveries make no second job (the
event id is remembered, and jobs are unique per digest). The pull target is built from the
allowlist: an event naming a host outside it is refused and nothing is fetched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from registry_hooks import ADAPTERS, HookAdapter, HookError, PushEvent
from registry_hooks.auth import BearerTokenAuth, bearer_token
from supplychain.access.tokens import TokenStore
from supplychain.config import Settings
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit, insert_ignore
from supplychain.evidence.models import SeenEvent, WebhookDelivery
from supplychain.evidence.recorder import record_tag
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
HOOKS_ROUTE = "/v1/hooks/{source}"
COSIGN_TAG = re.compile(r"^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$")
"""Tags of cosign's storage scheme and of the OCI referrers tag-schema fallback."""


@dataclass(frozen=True)
class IntakeResult:
    """What became of one webhook request."""

    status: int
    """HTTP status to answer."""
    message: str
    """Short human-readable outcome."""
    delivery_id: int | None = None
    """Stored delivery, when stored."""
    accepted: int = 0
    """Events that became new jobs."""
    duplicates: int = 0
    """Events already seen or already queued."""
    refused: tuple[str, ...] = field(default=())
    """Why events were refused (host not allowed…)."""


def _delivery(
    session: Session,
    source: str,
    body: bytes,
    content_type: str | None,
    remote: str | None,
    outcome: str,
    detail: str | None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        source=source,
        authenticated=True,
        content_type=content_type,
        remote_addr=remote,
        body=body,
        outcome=outcome,
        detail=detail,
        events=0,
        jobs_created=0,
    )
    session.add(delivery)
    session.flush()
    return delivery


class Intake:
    """Receives webhook requests for every adapter."""

    def __init__(
        self, db: Database, queue: JobQueue, settings: Settings, tokens: TokenStore
    ) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.tokens = tokens
        self.keys = dict(settings.webhook_keys)
        if settings.webhook_token and "distribution" not in self.keys:
            self.keys["distribution"] = settings.webhook_token  # the former shared token

    def _sender(self, adapter: HookAdapter, headers: Mapping[str, str], body: bytes) -> str | None:
        """Who sent the request: the source's configured key, or a ``webhook`` token issued for
        this very source; None when neither proves it."""
        key = self.keys.get(adapter.name)
        if key is not None and adapter.authenticate(headers, body, key):
            return adapter.name
        token = bearer_token(headers) if isinstance(adapter, BearerTokenAuth) else None
        principal = self.tokens.check(token) if token else None
        if principal is None or principal.role != "webhook" or principal.source != adapter.name:
            return None
        self.tokens.used(principal, f"POST {HOOKS_ROUTE}")
        return principal.name

    def receive(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None = None,
    ) -> IntakeResult:
        """Handle one request to ``/v1/hooks/<source>``; ``headers`` keys are lower case."""
        adapter = ADAPTERS.get(source)
        if adapter is None:
            return IntakeResult(404, f"no webhook adapter named {source!r}")
        if self._sender(adapter, headers, body) is None:
            log.warning(
                "webhook refused: bad credentials", extra={"source": source, "remote": remote_addr}
            )
            self.tokens.refused(f"remote:{remote_addr}", f"POST {HOOKS_ROUTE}", "bad credentials")
            return IntakeResult(
                401,
                f"missing or wrong credentials: send a webhook token made for source {source!r} "
                f"(supplychain tokens create --role webhook --source {source}) or set its key "
                "in SUPPLYCHAIN_WEBHOOK_KEYS",
            )
        if len(body) > MAX_BODY:
            return IntakeResult(413, f"body over {MAX_BODY} bytes")
        content_type = headers.get("content-type")
        try:
            events = adapter.parse(body, content_type)
        except HookError as exc:
            delivery_id = self._store(
                source, body, content_type, remote_addr, "malformed", str(exc)
            )
            return IntakeResult(400, f"malformed webhook: {exc}", delivery_id)
        return self._accept(adapter, events, body, content_type, remote_addr)

    def _store(
        self,
        source: str,
        body: bytes,
        content_type: str | None,
        remote: str | None,
        outcome: str,
        detail: str,
    ) -> int:
        with self.db.session(write=True) as session:
            return _delivery(session, source, body, content_type, remote, outcome, detail).id

    def _accept(
        self,
        adapter: HookAdapter,
        events: list[PushEvent],
        body: bytes,
        content_type: str | None,
        remote: str | None,
    ) -> IntakeResult:
        accepted = duplicates = 0
        refused: list[str] = []
        with self.db.session(write=True) as session:
            delivery = _delivery(session, adapter.name, body, content_type, remote, "pending", None)
            delivery.events = len(events)
            for event in events:
                host = event.registry
                if host is None or host not in self.settings.registries:
                    reason = f"registry {host!r} is not in SUPPLYCHAIN_REGISTRIES"
                    refused.append(reason)
                    audit(
                        session,
                        adapter.name,
                        "webhook.refused",
                        f"{host}/{event.repository}",
                        reason=reason,
                    )
                    continue
                if event.event_id and not insert_ignore(
                    session,
                    SeenEvent,
                    {"key": f"{adapter.name}:{event.event_id}", "delivery_id": delivery.id},
                ):
                    duplicates += 1
                    continue
                if event.tag and COSIGN_TAG.match(event.tag):
                    continue  # a signature, attestation or referrers index: not an image
                if event.digest is None:
                    refused.append(f"{event.repository}: event carries no digest")
                    continue
                target = ImageTarget(host, event.repository, event.digest, event.tag)
                if event.tag:
                    record_tag(session, target, event.tag, source=f"webhook:{adapter.name}")
                kind = event.job_kind
                if self.queue.enqueue(session, kind, target):
                    accepted += 1
                    audit(
                        session,
                        adapter.name,
                        "job.queued",
                        target.pinned,
                        kind=kind,
                        delivery=delivery.id,
                    )
                else:
                    duplicates += 1
            delivery.jobs_created = accepted
            delivery.outcome = (
                "refused" if refused and not accepted and not duplicates else "accepted"
            )
            delivery.detail = "; ".join(refused) or None
            delivery_id = delivery.id
        message = f"{accepted} queued, {duplicates} duplicate, {len(refused)} refused"
        return IntakeResult(202, message, delivery_id, accepted, duplicates, tuple(refused))
