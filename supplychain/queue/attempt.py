"""Watches one claimed attempt: renews its lease, enforces stage deadlines, ends it when lost.

The heartbeat survives database errors: it keeps trying until the lease it last renewed would
run out. Then (or when a stage passes its deadline, or the lease was taken away) the attempt is
*lost*: the worker drops its results and the Trivy child of the worker's thread is killed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from supplychain.queue.faults import DATABASE, FAULTS, fault_of
from supplychain.queue.jobs import ClaimedJob, JobQueue
from supplychain.stages.children import CHILDREN

__all__ = ["DEFAULT_DEADLINES", "AttemptWatch"]

log = logging.getLogger(__name__)

DEFAULT_DEADLINES: Mapping[str, float] = {
    "pull": 900.0,
    "sbom": 900.0,
    "scan": 900.0,
    "verify": 300.0,
}
"""Seconds each stage may run before its attempt is ended (``SUPPLYCHAIN_STAGE_DEADLINES``)."""
TICK = 0.5


class AttemptWatch:
    """A thread beside the worker's for one attempt; the worker reads :attr:`lost`."""

    def __init__(
        self,
        queue: JobQueue,
        claim: ClaimedJob,
        *,
        owner: int,
        deadlines: Mapping[str, float] = DEFAULT_DEADLINES,
    ) -> None:
        self.queue = queue
        self.claim = claim
        self.owner = owner
        self.deadlines = deadlines
        self.lost = threading.Event()
        self.reason: str | None = None
        self.renewed = time.monotonic()
        self._stage: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{claim.id}")

    @property
    def lease_left(self) -> float:
        """Seconds until the lease last renewed runs out (as far as this worker knows)."""
        return self.queue.lease.total_seconds() - (time.monotonic() - self.renewed)

    def stage(self, name: str) -> None:
        """The worker entered stage ``name`` (the pipeline's progress callback)."""
        self._stage = (name, time.monotonic())

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """The attempt is over: stop watching."""
        self._stop.set()
        self._thread.join()

    def abandon(self, reason: str) -> None:
        """Mark the attempt lost and kill the worker thread's children."""
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
            killed = CHILDREN.kill(self.owner)
            log.warning(
                "attempt abandoned: %s",
                reason,
                extra={"job": self.claim.id, "attempt": self.claim.attempt, "killed": killed},
            )

    def _run(self) -> None:
        interval = max(TICK, self.queue.lease.total_seconds() / 3)
        next_beat = time.monotonic() + interval
        while not self._stop.wait(TICK) and not self.lost.is_set():
            self._check_deadline()
            if time.monotonic() >= next_beat and not self.lost.is_set():
                next_beat = time.monotonic() + (interval if self._beat() else TICK * 2)

    def _check_deadline(self) -> None:
        if self._stage is None:
            return
        name, started = self._stage
        limit = self.deadlines.get(name)
        if limit is None or time.monotonic() - started <= limit:
            return
        reason = f"stage {name} made no progress within its deadline of {limit:g}s"
        try:
            self.queue.fail(self.claim, reason)
        except Exception as exc:  # the database may be down too: the lease then runs out
            log.warning("could not record the deadline: %s", exc, extra={"job": self.claim.id})
        self.abandon(reason)

    def _beat(self) -> bool:
        """Renew the lease; True when renewed (or lost for good), False to retry soon."""
        try:
            held = self.queue.heartbeat(self.claim)
        except Exception as exc:
            fault = fault_of(exc)
            if fault is not None:
                FAULTS.note(*fault)
            if self.lease_left <= TICK * 2:
                self.abandon(f"heartbeat failed until the lease ran out: {exc.__class__.__name__}")
            else:
                log.warning(
                    "heartbeat failed, retrying: %s",
                    fault[1] if fault else type(exc).__name__,
                    extra={"job": self.claim.id, "lease_left": round(self.lease_left, 1)},
                )
            return False
        FAULTS.clear(DATABASE)
        if not held:
            self.abandon("lease lost (another worker holds the job, or it was released)")
            return True
        self.renewed = time.monotonic()
        return True
