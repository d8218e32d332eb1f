"""Workers: claim a job, run the pipeline, record the outcome and complete the job in one go."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from supplychain.decide.decider import Decider
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import (
    record_facts,
    record_verdict,
)
from supplychain.interface import (
    CatalogError,
    PolicyError,
    ScanError,
    SourceError,
    Verdict,
    VerifyError,
)
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.metrics import JOBS, STAGE_SECONDS
from supplychain.queue.attempt import DEFAULT_DEADLINES, AttemptWatch
from supplychain.queue.expand import expand_index
from supplychain.queue.faults import DATABASE, FAULTS, fault_of, short
from supplychain.queue.jobs import ClaimedJob, JobQueue, LeaseLostError
from supplychain.registry import (
    DigestMismatchError,
    Manifest,
    NotAnImageError,
    RegistryClient,
)
from supplychain.registry.index import MAX_INDEX_DEPTH, MAX_INDEX_ENTRIES
from supplychain.stages.pipeline import Outcome, Pipeline

log = logging.getLogger(__name__)

STAGE_ERRORS = (SourceError, CatalogError, ScanError, VerifyError, PolicyError)

Issuer = Callable[[Outcome, Verdict], Sequence[str]]
"""Called after the facts and the verdict are recorded (signing); returns what it pushed."""


@dataclass(frozen=True)
class IndexLimits:
    """How far an image index is followed (``SUPPLYCHAIN_INDEX_MAX_*``)."""

    max_entries: int = MAX_INDEX_ENTRIES
    """Entries of all levels together; more is a deny."""
    max_depth: int = MAX_INDEX_DEPTH
    """Nested levels followed; deeper is a deny."""


T = TypeVar("T")
MAX_IDLE = 5.0


def worker_name() -> str:
    """A name unique to this worker: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Processes jobs until stopped."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        pipeline: Pipeline,
        client: RegistryClient,
        decider: Decider,
        name: str | None = None,
        *,
        issuer: Issuer | None = None,
        limits: IndexLimits | None = None,
        deadlines: Mapping[str, float] = DEFAULT_DEADLINES,
        on_job_done: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.pipeline = pipeline
        self.client = client
        self.decider = decider
        self.name = name or worker_name()
        self.issuer = issuer
        self.limits = limits or IndexLimits()
        self.deadlines = deadlines
        self.watch: AttemptWatch | None = None
        """The attempt under way, if any (read by the shutdown)."""
        self.on_job_done = on_job_done

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Loop until ``stop`` is set; wait ``idle_seconds`` when there is no work (or until a job
        is enqueued in this process)."""
        idle = idle_seconds
        log.info("worker started", extra={"worker": self.name})
        while not stop.is_set():
            seen = self.queue.wakeup.generation
            try:
                worked = self.run_once()
                idle = idle_seconds
            except DBAPIError as exc:  # database down: wait, longer each time, and try again
                FAULTS.note(DATABASE, f"database unavailable: {short(exc.orig or exc)}")
                log.warning("database unavailable: %s", short(exc.orig or exc))
                worked, idle = False, min(MAX_IDLE, idle * 2)
            except Exception:  # the loop must survive anything one job does
                log.exception("worker loop error", extra={"worker": self.name})
                worked = False
            if not worked:
                self.queue.wakeup.wait(seen, idle, stop)
        log.info("worker stopped", extra={"worker": self.name})

    def run_once(self) -> bool:
        """Claim and process one job; False when there was none."""
        claim = self.queue.claim(self.name)
        FAULTS.clear(DATABASE)
        if claim is None:
            return False
        log.info(
            "job claimed",
            extra={"job": claim.id, "image": claim.target.pinned, "attempt": claim.attempt},
        )
        watch = AttemptWatch(
            self.queue, claim, owner=threading.get_ident(), deadlines=self.deadlines
        )
        self.watch = watch
        watch.start()
        try:
            self._process(claim, watch)
        finally:
            watch.stop()
            self.watch = None
        if self.on_job_done is not None:
            self.on_job_done()  # wakes gate calls waiting in this process
        return True

    def _process(self, claim: ClaimedJob, watch: AttemptWatch) -> None:
        try:
            if claim.kind == "image":
                self._image(claim, watch)
            else:
                self._manifest(claim, watch)
            JOBS.labels(outcome="done").inc()
        except LeaseLostError as exc:
            JOBS.labels(outcome="lease_lost").inc()
            log.warning("results dropped: %s", exc, extra={"job": claim.id})
        except DigestMismatchError as exc:
            integrity = f"integrity: {exc}"
            self._settle(watch, lambda: self._failed(claim, integrity, retry=False))
        except NotAnImageError as exc:
            artifact = str(exc)
            self._settle(watch, lambda: self._skip(claim, artifact))
        except Exception as exc:
            if watch.lost.is_set():
                JOBS.labels(outcome="lease_lost").inc()
                log.warning("attempt ended: %s", watch.reason, extra={"job": claim.id})
                return
            fault = fault_of(exc)
            if fault is not None:
                FAULTS.note(*fault)
                self._settle(watch, lambda: self._deferred(claim, fault[1]))
                return
            reason = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, STAGE_ERRORS):
                log.exception("unexpected job error", extra={"job": claim.id})
                reason = f"internal error: {reason}"
            self._settle(watch, lambda: self._failed(claim, reason, retry=True))

    def _settle(self, watch: AttemptWatch, record: Callable[[], T]) -> T:
        """Run a database write of this attempt, retrying through a database outage for as long
        as the lease lasts; then give up (the lease runs out and the job is claimed again)."""
        while True:
            try:
                return record()
            except DBAPIError as exc:
                FAULTS.note(DATABASE, f"database unavailable: {short(exc.orig or exc)}")
                if watch.lost.is_set() or watch.lease_left <= 1.0:
                    raise
                log.warning(
                    "database unavailable, retrying the write: %s",
                    short(exc.orig or exc),
                    extra={"job": watch.claim.id},
                )
                time.sleep(1.0)

    def _deferred(self, claim: ClaimedJob, reason: str) -> None:
        state = self.queue.defer(claim, reason[:4000])
        JOBS.labels(outcome="deferred" if state == "queued" else state).inc()
        log.warning("job deferred", extra={"job": claim.id, "reason": reason, "state": state})

    def _skip(self, claim: ClaimedJob, reason: str) -> None:
        """A signature or other artifact pushed to the repository: nothing to scan."""
        with self.db.session(write=True) as session:
            self.queue.complete(session, claim)
            audit(session, self.name, "job.skipped", claim.target.pinned, reason=reason)
        JOBS.labels(outcome="skipped").inc()

    def _failed(self, claim: ClaimedJob, reason: str, *, retry: bool) -> None:
        state = self.queue.fail(claim, reason[:4000], retry=retry)
        JOBS.labels(outcome="failed" if state == "failed" else "retry").inc()
        log.warning("job failed", extra={"job": claim.id, "reason": reason, "state": state})
        if state == "failed":
            with self.db.session(write=True) as session:
                audit(
                    session,
                    self.name,
                    "job.failed",
                    claim.target.pinned,
                    job=claim.id,
                    reason=reason,
                )

    def _image(self, claim: ClaimedJob, watch: AttemptWatch) -> None:
        """Record the facts, then decide on them as loaded back: the gate's very answer."""
        outcome: Outcome | None = None
        try:
            outcome = self.pipeline.run(claim.target, progress=watch.stage)
            verdict = self._settle(watch, lambda: self._record(claim, watch, outcome))
        finally:
            if outcome is not None:
                shutil.rmtree(outcome.image.layout_dir, ignore_errors=True)
        for stage, seconds in outcome.stage_seconds.items():
            STAGE_SECONDS.labels(stage=stage).observe(seconds)
        if self.issuer is not None:
            self._issue(claim, outcome, verdict)
        log.info(
            "image processed",
            extra={"job": claim.id, "image": claim.target.pinned, "decision": verdict.decision},
        )

    def _record(self, claim: ClaimedJob, watch: AttemptWatch, outcome: Outcome | None) -> Verdict:
        if watch.lost.is_set() or outcome is None:
            raise LeaseLostError(f"job {claim.id}: {watch.reason}")
        with self.db.session(write=True) as session:
            image, scan_id = record_facts(session, outcome, job_id=claim.id, actor=self.name)
            verdict = self.decider.verdict(session, image)
            record_verdict(session, verdict, image=image, scan_id=scan_id, context="pipeline")
            self.queue.complete(session, claim)
        return verdict

    def _manifest(self, claim: ClaimedJob, watch: AttemptWatch) -> None:
        """An ``index`` job, or a ``manifest`` job whose media type the webhook did not name."""
        target = claim.target
        manifest = self.client.get_manifest(target.registry, target.repository, target.digest)
        if manifest.media_type in INDEX_MEDIA_TYPES:
            self._fan_out(claim, manifest)
        else:
            self._image(claim, watch)

    def _issue(self, claim: ClaimedJob, outcome: Outcome, verdict: Verdict) -> None:
        """Sign and attest after the recorded verdict; a failure is logged and audited.

        The verdict is recorded whatever happens here: our own signature is an addition, and its
        absence never turns into an allow (a gate requiring it denies).
        """
        assert self.issuer is not None  # noqa: S101 - checked by the caller
        details: dict[str, object]
        try:
            action, details = "image.signed", {"pushed": list(self.issuer(outcome, verdict))}
        except Exception as exc:  # signing must not lose the recorded verdict
            log.exception("signing failed", extra={"job": claim.id})
            action, details = "image.signing_failed", {"reason": f"{type(exc).__name__}: {exc}"}
        with self.db.session(write=True) as session:
            audit(session, self.name, action, claim.target.pinned, job=claim.id, **details)

    def _fan_out(self, claim: ClaimedJob, index: Manifest) -> None:
        """Record the index's own entries (checked) and queue its platform images."""
        target = claim.target
        found = expand_index(
            self.client,
            target,
            index.media_type,
            index.data,
            max_entries=self.limits.max_entries,
            max_depth=self.limits.max_depth,
        )
        with self.db.session(write=True) as session:
            found.record(session)
            for child in found.images:
                self.queue.enqueue(session, "image", child)
            error = found.indexes[-1].error if found.indexes else None
            audit(
                session,
                self.name,
                "index.refused" if error else "index.expanded",
                target.pinned,
                images=len(found.images),
                reason=error,
            )
            self.queue.complete(session, claim)
