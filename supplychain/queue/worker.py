"""Workers: claim a job, run the pipeline, record the outcome and complete the job in one go."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Sequence

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import record_outcome, upsert_image
from supplychain.interface import (
    CatalogError,
    ImageTarget,
    PolicyError,
    ScanError,
    SourceError,
    VerifyError,
)
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.metrics import JOBS, STAGE_SECONDS
from supplychain.queue.jobs import ClaimedJob, JobQueue, LeaseLostError
from supplychain.registry import (
    DigestMismatchError,
    Manifest,
    NotAnImageError,
    RegistryClient,
)
from supplychain.registry.index import MAX_INDEX_ENTRIES, platform_images
from supplychain.stages.pipeline import Outcome, Pipeline

log = logging.getLogger(__name__)

STAGE_ERRORS = (SourceError, CatalogError, ScanError, VerifyError, PolicyError)

Issuer = Callable[[Outcome], Sequence[str]]
"""Called after an outcome is recorded (signing after a verdict); returns what it pushed."""


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
        name: str | None = None,
        *,
        issuer: Issuer | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.pipeline = pipeline
        self.client = client
        self.name = name or worker_name()
        self.issuer = issuer

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Loop until ``stop`` is set; wait ``idle_seconds`` when there is no work."""
        log.info("worker started", extra={"worker": self.name})
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the loop must survive anything one job does
                log.exception("worker loop error", extra={"worker": self.name})
                worked = False
            if not worked:
                stop.wait(idle_seconds)
        log.info("worker stopped", extra={"worker": self.name})

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
        outcome: Outcome | None = None
        try:
            outcome = self.pipeline.run(claim.target)
            with self.db.session() as session:
                record_outcome(session, outcome, job_id=claim.id, actor=self.name)
                self.queue.complete(session, claim)
        finally:
            if outcome is not None:
                shutil.rmtree(outcome.image.layout_dir, ignore_errors=True)
        for stage, seconds in outcome.stage_seconds.items():
            STAGE_SECONDS.labels(stage=stage).observe(seconds)
        if self.issuer is not None:
            self._issue(claim, outcome)
        log.info(
            "image processed",
            extra={
                "job": claim.id,
                "image": claim.target.pinned,
                "decision": outcome.verdict.decision,
            },
        )

    def _manifest(self, claim: ClaimedJob) -> None:
        """An ``index`` job, or a ``manifest`` job whose media type the webhook did not name."""
        target = claim.target
        manifest = self.client.get_manifest(target.registry, target.repository, target.digest)
        if manifest.media_type in INDEX_MEDIA_TYPES:
            self._fan_out(claim, manifest)
        else:
            self._image(claim)

    def _issue(self, claim: ClaimedJob, outcome: Outcome) -> None:
        """Sign and attest after the recorded verdict; a failure is logged and audited.

        The verdict is recorded whatever happens here: our own signature is an addition, and its
        absence never turns into an allow (a gate requiring it denies).
        """
        assert self.issuer is not None  # noqa: S101 - checked by the caller
        details: dict[str, object]
        try:
            action, details = "image.signed", {"pushed": list(self.issuer(outcome))}
        except Exception as exc:  # signing must not lose the recorded verdict
            log.exception("signing failed", extra={"job": claim.id})
            action, details = "image.signing_failed", {"reason": f"{type(exc).__name__}: {exc}"}
        with self.db.session() as session:
            audit(session, self.name, action, claim.target.pinned, job=claim.id, **details)

    def _fan_out(self, claim: ClaimedJob, index: Manifest) -> None:
        target = claim.target
        children = platform_images(index.data, max_entries=MAX_INDEX_ENTRIES)
        with self.db.session() as session:
            upsert_image(session, target, media_type=index.media_type)
            for digest, media_type, platform in children:
                child = ImageTarget(target.registry, target.repository, digest, None)
                upsert_image(
                    session,
                    child,
                    media_type=media_type,
                    platform=platform,
                    index_digest=target.digest,
                    index_platform=True,
                )
                self.queue.enqueue(session, "image", child)
            audit(session, self.name, "index.expanded", target.pinned, platforms=len(children))
            self.queue.complete(session, claim)
