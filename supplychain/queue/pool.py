"""Worker threads of one process, and their shutdown on SIGTERM.

Shutdown stops claiming at once, gives the jobs under way one grace period *together*, then
releases the leases of those still running (another worker may claim them at once, without
spending an attempt) and kills their Trivy children.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from supplychain.queue.worker import Worker
from supplychain.stages.children import CHILDREN

__all__ = ["WorkerPool"]

log = logging.getLogger(__name__)


class WorkerPool:
    """``count`` workers, each in its own thread."""

    def __init__(self, make_worker: Callable[[], Worker], count: int) -> None:
        self.stop_event = threading.Event()
        self.workers = [make_worker() for _ in range(count)]
        self.threads = [
            threading.Thread(
                target=worker.run, args=(self.stop_event,), daemon=True, name=f"worker-{i}"
            )
            for i, worker in enumerate(self.workers)
        ]

    def start(self) -> None:
        """Start every worker."""
        for thread in self.threads:
            thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the workers to end; True when all have, within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(thread.is_alive() for thread in self.threads)

    def shutdown(self, grace: float) -> int:
        """Stop claiming; after ``grace`` seconds release what still runs. How many released."""
        log.info("workers stopping", extra={"workers": len(self.workers)})
        self.stop_event.set()
        for worker in self.workers:
            worker.queue.wakeup.notify()  # idle workers see the stop now
        if self.wait(grace):
            return 0
        released = 0
        for worker in self.workers:
            watch = worker.watch
            if watch is None:
                continue
            try:
                state = worker.queue.release(watch.claim, "worker shut down")
            except Exception as exc:  # database down: the lease runs out instead
                log.warning("could not release job %s: %s", watch.claim.id, type(exc).__name__)
                state = "unreleased"
            watch.abandon(f"shutdown after {grace:g}s grace: lease {state}")
            released += state == "queued"
        CHILDREN.kill_all()
        self.wait(5.0)
        log.info("workers stopped", extra={"released": released})
        return released
