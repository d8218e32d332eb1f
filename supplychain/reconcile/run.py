"""One reconcile pass: list the allowlisted registries and queue every digest never seen.

Registries drop notifications (distribution keeps its queue in memory, ECR promises best effort),
so webhooks alone miss pushes. A pass lists each allowlisted registry's repositories (its
``/v2/_catalog``, or the repositories ``SUPPLYCHAIN_RECONCILE_REPOSITORIES`` names for that host),
lists each repository's tags, resolves every tag to a digest with one ``HEAD``, and queues each
digest that has no job yet through :meth:`JobQueue.enqueue`, the queue's one entrance, with the
same dedupe as webhooks and the gate (one job per digest in a repository). The job is of kind
``manifest``: the worker reads the verified manifest to tell an index from an image, so nothing
rests on the ``HEAD``'s headers. Tags are recorded in the tag history (source ``reconcile``);
cosign's signature and attestation tags and referrers fallbacks are not images and are skipped.

Everything goes through the one registry client (allowlist, checked addresses, credentials from
the Docker ``config.json``), listed by :mod:`supplychain.registry.listing` (same-origin ``Link``
pages only) and paced by a :class:`~supplychain.registry.listing.Pacer` per registry. A failure
is reported for its repository or registry, never hidden, and the pass goes on; the database
being down is not caught (the caller sees it). Each registry's pass is audited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import record_tag
from supplychain.intake.record import COSIGN_TAG
from supplychain.interface import ImageTarget
from supplychain.metrics import RECONCILE
from supplychain.queue.jobs import JobQueue, job_key
from supplychain.registry import NotFoundError, RegistryClient, RegistryError
from supplychain.registry.listing import Pacer, list_repositories, list_tag_pages

__all__ = ["ACTOR", "ReconcileReport", "Reconciler", "RegistryPass"]

log = logging.getLogger(__name__)

ACTOR = "reconcile"
"""The audit log's actor and the tag history's source."""
JOB_KIND = "manifest"
"""The worker tells an index from an image by the verified manifest."""


@dataclass(frozen=True)
class RegistryPass:
    """What one pass found and did at one registry."""

    registry: str
    """``host[:port]``."""
    repositories: int
    """Repositories listed."""
    tags: int
    """Tags resolved to a digest."""
    queued: tuple[str, ...]
    """``host/repo@digest`` of each job queued (digests never seen before)."""
    known: int
    """Digests that already had a job (queued, running, done or failed)."""
    skipped: int
    """Names outside distribution's grammar, signature tags, and tags gone before their HEAD."""
    errors: tuple[str, ...]
    """Why a registry, repository or tag could not be listed or resolved."""
    requests: int
    """Requests sent to the registry (retries included)."""


@dataclass(frozen=True)
class ReconcileReport:
    """One pass over every registry."""

    registries: tuple[RegistryPass, ...]
    """Per registry, in the order listed."""
    seconds: float
    """Wall time of the pass."""

    @property
    def queued(self) -> tuple[str, ...]:
        """Every job queued by the pass."""
        return tuple(ref for one in self.registries for ref in one.queued)

    @property
    def errors(self) -> tuple[str, ...]:
        """Every error of the pass."""
        return tuple(error for one in self.registries for error in one.errors)


@dataclass
class _Tally:
    registry: str
    repositories: int = 0
    tags: int = 0
    known: int = 0
    skipped: int = 0
    queued: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def result(self, requests: int) -> RegistryPass:
        return RegistryPass(
            self.registry, self.repositories, self.tags, tuple(self.queued), self.known,
            self.skipped, tuple(self.errors), requests,
        )  # fmt: skip


class Reconciler:
    """Runs reconcile passes over ``registries`` (see the module doc)."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        client: RegistryClient,
        registries: Iterable[str],
        *,
        repositories: Iterable[tuple[str, str]] = (),
        page_size: int = 100,
        rate: float = 10.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.client = client
        self.registries = tuple(sorted(registries))
        self.repositories: dict[str, list[str]] = {}
        for host, repository in repositories:
            self.repositories.setdefault(host, []).append(repository)
        self.page_size = page_size
        self.rate = rate
        self.stop = stop or threading.Event()
        """Set to end a pass early (``serve`` shutting down)."""

    def run(self, hosts: Iterable[str] | None = None) -> ReconcileReport:
        """One pass over ``hosts`` (default: every allowlisted registry)."""
        started = time.monotonic()
        chosen = self.registries if hosts is None else tuple(hosts)
        done = tuple(self._registry(host) for host in chosen if not self.stop.is_set())
        return ReconcileReport(done, time.monotonic() - started)

    def _registry(self, host: str) -> RegistryPass:
        tally = _Tally(host)
        pacer = Pacer(self.rate, stop=self.stop)
        try:
            for repository in self._repositories(host, pacer, tally):
                if self.stop.is_set():
                    break
                tally.repositories += 1
                try:
                    self._repository(host, repository, pacer, tally)
                except RegistryError as exc:
                    tally.errors.append(f"{host}/{repository}: {exc}")
        except RegistryError as exc:
            tally.errors.append(f"{host}: {exc}")
        result = tally.result(pacer.calls)
        with self.db.session(write=True) as session:
            audit(
                session, ACTOR, "reconcile.pass", host, repositories=result.repositories,
                tags=result.tags, queued=len(result.queued), known=result.known,
                skipped=result.skipped, errors=list(result.errors[:20]),
            )  # fmt: skip
        RECONCILE.labels(outcome="queued").inc(len(result.queued))
        RECONCILE.labels(outcome="error").inc(len(result.errors))
        return result

    def _repositories(self, host: str, pacer: Pacer, tally: _Tally) -> Iterator[str]:
        if host in self.repositories:
            yield from self.repositories[host]
            return
        for page in list_repositories(self.client, host, page_size=self.page_size, pacer=pacer):
            tally.skipped += page.skipped
            yield from page.names

    def _repository(self, host: str, repository: str, pacer: Pacer, tally: _Tally) -> None:
        pages = list_tag_pages(self.client, host, repository, page_size=self.page_size, pacer=pacer)
        for page in pages:
            tally.skipped += page.skipped
            found: list[tuple[str, ImageTarget]] = []
            for tag in page.names:
                if self.stop.is_set():
                    return
                if COSIGN_TAG.match(tag):
                    tally.skipped += 1
                    continue
                try:
                    head = pacer.call(partial(self.client.head_manifest, host, repository, tag))
                except NotFoundError:
                    tally.skipped += 1  # deleted since the listing
                    continue
                except RegistryError as exc:
                    tally.errors.append(f"{host}/{repository}:{tag}: {exc}")
                    continue
                found.append((tag, ImageTarget(host, repository, head.digest, tag)))
            tally.tags += len(found)
            self._queue(found, tally)

    def _queue(self, found: list[tuple[str, ImageTarget]], tally: _Tally) -> None:
        """Record the tags and queue the digests without a job, in one transaction."""
        if not found:
            return
        queued: list[str] = []
        with self.db.session(write=True) as session:
            known = self.queue.known(session, (target for _, target in found))
            new: dict[str, ImageTarget] = {}
            for tag, target in found:
                record_tag(session, target, tag, source=ACTOR)
                if job_key(target) not in known:
                    new.setdefault(job_key(target), target)
            for target in new.values():
                if self.queue.enqueue(session, JOB_KIND, target):
                    audit(session, ACTOR, "job.queued", target.pinned, kind=JOB_KIND)
                    queued.append(target.pinned)
        tally.known += len({job_key(target) for _, target in found}) - len(queued)
        tally.queued += queued
        for pinned in queued:
            log.info("reconcile queued %s", pinned)
