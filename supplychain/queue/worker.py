"""Workers: claim a job, run the pipeline, record the outcome and complete the job in one go."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from supplychain.decide.decider import Decider
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import (
    record_facts,
    record_index,
    record_verdict,
    upsert_image,
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
from supplychain.queue.expand import expand_index
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
    ) -> None:
        self.db = db
        self.queue = queue
        self.pipeline = pipeline
        self.client = client
        self.decider = decider
        self.name = name or worker_name()
        self.issuer = issuer
        self.limits = limits or IndexLimits()

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Loop until ``stop`` is set; wait ``idle_seconds`` when there is no work."""
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the loop must survive anything one job does
                log.exception("worker loop error", extra={"worker": self.name})
                worked = False
            if not worked:
                stop.wait(idle_seconds)

    def run_once(self) -> bool:
        """Claim and process one job; False when there was none."""
        claim = self.queue.claim(self.name)
        if claim is None:
            return False
        log.info(
            "job claimed",
            extra={"job": claim.id, "image": claim.target.pinned, "attempt": claim.attempt},
        )
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, stop_beat), daemon=True)
        beat.start()
        try:
            self._process(claim)
        finally:
            stop_beat.set()
            beat.join()
        return True

    def _heartbeat(self, claim: ClaimedJob, stop: threading.Event) -> None:
        interval = max(0.5, self.queue.lease.total_seconds() / 3)
        while not stop.wait(interval):
            if not self.queue.heartbeat(claim):
                log.warning("lease lost", extra={"job": claim.id})
                return

    def _process(self, claim: ClaimedJob) -> None:
        try:
            if claim.kind == "image":
                self._image(claim)
            else:
                self._manifest(claim)
            JOBS.labels(outcome="done").inc()
        except LeaseLostError as exc:
            JOBS.labels(outcome="lease_lost").inc()
            log.warning("results dropped: %s", exc, extra={"job": claim.id})
        except DigestMismatchError as exc:
            self._failed(claim, f"integrity: {exc}", retry=False)
        except NotAnImageError as exc:
            self._skip(claim, str(exc))
        except STAGE_ERRORS as exc:
            self._failed(claim, f"{type(exc).__name__}: {exc}", retry=True)
        except Exception as exc:
            log.exception("unexpected job error", extra={"job": claim.id})
            self._failed(claim, f"internal error: {type(exc).__name__}: {exc}", retry=True)

    def _skip(self, claim: ClaimedJob, reason: str) -> None:
        """A signature or other artifact pushed to the repository: nothing to scan."""
        with self.db.session() as session:
            self.queue.complete(session, claim)
            audit(session, self.name, "job.skipped", claim.target.pinned, reason=reason)
        JOBS.labels(outcome="skipped").inc()

    def _failed(self, claim: ClaimedJob, reason: str, *, retry: bool) -> None:
        state = self.queue.fail(claim, reason[:4000], retry=retry)
        JOBS.labels(outcome="failed" if state == "failed" else "retry").inc()
        log.warning("job failed", extra={"job": claim.id, "reason": reason, "state": state})
        if state == "failed":
            with self.db.session() as session:
                audit(
                    session,
                    self.name,
                    "job.failed",
                    claim.target.pinned,
                    job=claim.id,
                    reason=reason,
                )

    def _image(self, claim: ClaimedJob) -> None:
        """Record the facts, then decide on them as loaded back: the gate's very answer."""
        outcome: Outcome | None = None
        try:
            outcome = self.pipeline.run(claim.target)
            with self.db.session() as session:
                image, scan_id = record_facts(session, outcome, job_id=claim.id, actor=self.name)
                verdict = self.decider.verdict(session, image)
                record_verdict(session, verdict, image=image, scan_id=scan_id, context="pipeline")
                self.queue.complete(session, claim)
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

    def _manifest(self, claim: ClaimedJob) -> None:
        """An ``index`` job, or a ``manifest`` job whose media type the webhook did not name."""
        target = claim.target
        manifest = self.client.get_manifest(target.registry, target.repository, target.digest)
        if manifest.media_type in INDEX_MEDIA_TYPES:
            self._fan_out(claim, manifest)
        else:
            self._image(claim)

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
        with self.db.session() as session:
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
        with self.db.session() as session:
            for record in found.indexes:
                record_index(
                    session,
                    record.target,
                    media_type=record.media_type,
                    entries=record.entries,
                    error=record.error,
                )
            for child in found.images:
                upsert_image(session, child)
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
