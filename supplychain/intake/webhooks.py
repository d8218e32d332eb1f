"""Webhook intake: authenticate, read with the source's adapter, store durably, queue pushes.

The delivery is committed before the 2xx goes back (a
:class:`~supplychain.evidence.groupcommit.GroupCommit` shares one commit among concurrent
requests). Repeated deliveries make no second job: delivery ids and event
ids are remembered, jobs are unique per digest, and a signed send time older than
``SUPPLYCHAIN_WEBHOOK_MAX_AGE_SECONDS`` is a replay. The pull target is built from the allowlist:
an event naming a host outside it is refused and nothing is fetched. Tag-only pushes (Docker Hub,
Quay, some Artifact Registry notices) are resolved to a digest at the allowlisted registry first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from registry_hooks import Delivery, HookAdapter, HookError, HookEvent
from registry_hooks.auth import bearer_token
from supplychain.access.tokens import TokenStore
from supplychain.config import Settings
from supplychain.evidence.database import Database
from supplychain.evidence.groupcommit import GroupCommit
from supplychain.intake.record import COSIGN_TAG, IntakeResult, Received, record, record_batch
from supplychain.intake.sources import SIGNED_BY_SENDER, Sources, build_sources
from supplychain.queue.jobs import JobQueue
from supplychain.reference import ImageReference

__all__ = ["HOOKS_ROUTE", "MAX_BODY", "Intake", "IntakeResult", "Resolver"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
HOOKS_ROUTE = "/v1/hooks/{source}"
FUTURE_SKEW = timedelta(minutes=5)

Resolver = Callable[[ImageReference], tuple[str, str]]
"""Resolves a tag at an allowlisted registry: (digest, media type); raises on any failure."""


class Intake:
    """Receives webhook requests for every source."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        settings: Settings,
        tokens: TokenStore,
        *,
        sources: Sources | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.tokens = tokens
        self.sources = sources or build_sources(settings)
        self.resolver = resolver
        self._batch: GroupCommit[Session, Received, IntakeResult] | None = None

    @property
    def batch(self) -> GroupCommit[Session, Received, IntakeResult]:
        """The group commit shared by this process's requests (started on first use)."""
        if self._batch is None:
            window = self.settings.intake_batch_ms / 1000
            committers = 1 if self.settings.is_sqlite else max(1, self.settings.intake_committers)
            self._batch = GroupCommit(
                self.db.batch_session,
                lambda session, batch: record_batch(session, batch, self.queue),
                window=window,
                committers=committers,
                name="intake",
            )
        return self._batch

    def close(self) -> None:
        """Commit what is queued and stop the group commit."""
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    def receive(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None = None,
    ) -> IntakeResult:
        """Handle one request to ``/v1/hooks/<source>`` in its own transaction."""
        read = self.read(source, headers, body, remote_addr)
        if isinstance(read, IntakeResult):
            return read
        with self.db.session(write=True) as session:
            return record(session, read, self.queue)

    async def receive_batched(self, read: Received) -> IntakeResult:
        """Record an already read request in the shared group commit."""
        return await self.batch.submit(read)

    def read(
        self, source: str, headers: Mapping[str, str], body: bytes, remote: str | None
    ) -> Received | IntakeResult:
        """Authenticate and read a request (``headers`` keys lower case); an
        :class:`IntakeResult` when it is answered without being stored (404, 401, 413)."""
        adapter = self.sources.adapters.get(source)
        if adapter is None:
            return IntakeResult(404, f"no webhook adapter named {source!r}")
        if len(body) > MAX_BODY:
            return IntakeResult(413, f"body over {MAX_BODY} bytes")
        sender = self._sender(adapter, headers, body)
        if sender is None:
            log.warning(
                "webhook refused: bad credentials", extra={"source": source, "remote": remote}
            )
            self.tokens.refused(f"remote:{remote}", f"POST {HOOKS_ROUTE}", "bad credentials")
            return IntakeResult(401, self._credential_advice(source))
        return self._read_as(adapter, sender, headers, body, remote)

    def read_inline(
        self, source: str, headers: Mapping[str, str], body: bytes, remote: str | None
    ) -> Received | IntakeResult | None:
        """:meth:`read` when it needs no I/O (the source's own key proves the request and every
        push names its digest): cheap enough for the event loop. None: use :meth:`read` in a
        thread (token look-up, SNS certificate, OIDC keys, tag resolution)."""
        adapter = self.sources.adapters.get(source)
        key = self.sources.keys.get(source)
        if adapter is None or key is None or source in SIGNED_BY_SENDER or len(body) > MAX_BODY:
            return None
        if not adapter.authenticate(headers, body, key):
            return None
        try:
            delivery = adapter.read(headers, body)
        except HookError:
            return None
        if delivery.confirm_url or any(e.digest is None for e in delivery.pushes):
            return None
        return self._read_as(adapter, source, headers, body, remote, delivery)

    def _read_as(
        self,
        adapter: HookAdapter,
        sender: str,
        headers: Mapping[str, str],
        body: bytes,
        remote: str | None,
        delivery: Delivery | None = None,
    ) -> Received:
        source = adapter.name
        content_type = headers.get("content-type")
        if delivery is None:
            try:
                delivery = adapter.read(headers, body)
            except HookError as exc:
                return Received(source, sender, body, content_type, remote, None, str(exc))
        stale = self._window(delivery)
        if stale:  # nothing in a replayed delivery is used
            delivery = Delivery(ignored=stale, delivery_id=delivery.delivery_id)
        notes = self._confirm(delivery)
        refusals, digests = self._targets(delivery.events)
        return Received(
            source, sender, body, content_type, remote, delivery, None, digests, refusals, notes
        )

    def _credential_advice(self, source: str) -> str:
        if source in SIGNED_BY_SENDER:
            what = (
                "a message signed by SNS from a topic in SUPPLYCHAIN_SNS_TOPIC_ARNS"
                if source == "ecr"
                else "a Pub/Sub OIDC push token for SUPPLYCHAIN_GAR_AUDIENCE from a service "
                "account in SUPPLYCHAIN_GAR_SERVICE_ACCOUNTS"
            )
            return f"missing or wrong credentials: source {source!r} accepts only {what}"
        return (
            f"missing or wrong credentials: send a webhook token made for source {source!r} "
            f"(supplychain tokens create --role webhook --source {source}) or set its key "
            "in SUPPLYCHAIN_WEBHOOK_KEYS"
        )

    def _sender(self, adapter: HookAdapter, headers: Mapping[str, str], body: bytes) -> str | None:
        """Who sent the request: the source itself (its key or signature), or a ``webhook``
        token issued for this very source; None when nothing proves it."""
        if adapter.name in SIGNED_BY_SENDER:
            return adapter.name if adapter.authenticate(headers, body, "") else None
        key = self.sources.keys.get(adapter.name)
        if key is not None and adapter.authenticate(headers, body, key):
            return adapter.name
        token = bearer_token(headers) if self.sources.uses_bearer(adapter.name) else None
        principal = self.tokens.check(token) if token else None
        if principal is None or principal.role != "webhook" or principal.source != adapter.name:
            return None
        self.tokens.used(principal, f"POST {HOOKS_ROUTE}")
        return principal.name

    def _window(self, delivery: Delivery) -> tuple[str, ...]:
        """A reason to drop everything when the sender's signed time is outside the window."""
        if delivery.signed_at is None:
            return ()
        now = datetime.now(UTC)
        oldest = now - timedelta(seconds=self.settings.webhook_max_age_seconds)
        if oldest <= delivery.signed_at <= now + FUTURE_SKEW:
            return ()
        return (f"signed time {delivery.signed_at.isoformat()} is outside the window: a replay",)

    def _confirm(self, delivery: Delivery) -> tuple[str, ...]:
        """Visit an SNS subscription's confirmation URL (already checked to be SNS's)."""
        url = delivery.confirm_url
        if url is None:
            return ()
        if self.sources.confirm is None:
            return (
                "SNS subscription confirmations are off (SUPPLYCHAIN_SNS_CONFIRM_SUBSCRIPTIONS)",
            )
        try:
            self.sources.confirm(url)
        except (OSError, HookError) as exc:
            return (f"visiting the SNS confirmation URL failed: {type(exc).__name__}",)
        return ("SNS subscription confirmed",)

    def _targets(
        self, events: tuple[HookEvent, ...]
    ) -> tuple[tuple[str | None, ...], tuple[tuple[str | None, str | None], ...]]:
        """Per event: why it is refused before the database, and the digest resolved for a
        tag-only push (at an allowlisted registry only)."""
        refusals: list[str | None] = []
        digests: list[tuple[str | None, str | None]] = []
        for event in events:
            host = event.registry
            where = f"{host}/{event.repository}"
            found: tuple[str | None, str | None] = (None, None)
            refusal: str | None = None
            if host is None or host not in self.settings.registries:
                refusal = f"{where}: registry {host!r} is not in SUPPLYCHAIN_REGISTRIES"
            elif (
                event.action == "push"
                and event.digest is None
                and event.tag is not None
                and not COSIGN_TAG.match(event.tag)  # ignored later: not worth a fetch
            ):
                found, refusal = self._resolve(host, event.repository, event.tag)
            refusals.append(refusal)
            digests.append(found)
        return tuple(refusals), tuple(digests)

    def _resolve(
        self, host: str, repository: str, tag: str
    ) -> tuple[tuple[str | None, str | None], str | None]:
        where = f"{host}/{repository}:{tag}"
        if self.resolver is None:
            return (None, None), f"{where}: tag-only event and no registry to resolve it at"
        try:
            digest, media_type = self.resolver(ImageReference(host, repository, tag=tag))
        except Exception as exc:  # registry down, 404, refused redirect: refused, said why
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return (None, None), f"{where}: cannot resolve the tag at the registry: {reason}"
        return (digest, media_type), None
