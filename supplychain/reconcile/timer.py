"""``serve``'s reconcile timer: a pass at start, then one every ``interval`` seconds.

A pass that fails (database down) is logged and the next one runs on time; ``stop()`` ends the
pass under way between two requests.
"""

from __future__ import annotations

import logging
import threading

from supplychain.reconcile.run import Reconciler, ReconcileReport

__all__ = ["ReconcileTimer", "summary"]

log = logging.getLogger(__name__)


def summary(report: ReconcileReport) -> str:
    """One line: what a pass listed, queued and could not do."""
    repositories = sum(one.repositories for one in report.registries)
    tags = sum(one.tags for one in report.registries)
    return (
        f"{len(report.registries)} registries, {repositories} repositories, {tags} tags: "
        f"{len(report.queued)} queued, {len(report.errors)} errors in {report.seconds:.1f}s"
    )


class ReconcileTimer:
    """Runs ``reconciler`` in a daemon thread every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, reconciler: Reconciler, interval: float) -> None:
        self.reconciler = reconciler
        self.interval = interval
        self.passes = 0
        """Passes finished."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="reconcile")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the pass under way and the timer; wait up to ``timeout`` seconds."""
        self.reconciler.stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = self.reconciler.stop
        while not stop.is_set():
            try:
                report = self.reconciler.run()
            except Exception as exc:  # the database, most likely: try again next time
                log.warning("reconcile pass failed: %s", type(exc).__name__, exc_info=True)
            else:
                self.passes += 1
                log.info("reconcile pass: %s", summary(report))
                for error in report.errors:
                    log.warning("reconcile: %s", error)
            stop.wait(self.interval)
