"""Wake idle workers of this process when a job is enqueued, instead of letting them sleep on.

Workers poll the database when idle (other processes enqueue too), but a job enqueued in this
process (a webhook, a gate call, an index fan-out) wakes them as soon as its transaction commits:
the claim no longer waits out the idle sleep. A generation counter, read before the claim, makes a
wake that lands between an empty claim and the wait count.
"""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

__all__ = ["Wakeup"]


class Wakeup:
    """A counter of enqueues; idle workers wait for it to move."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Read before claiming; pass to :meth:`wait`."""
        with self._changed:
            return self._generation

    def notify(self) -> None:
        """Wake every waiting worker now."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def notify_after_commit(self, session: Session) -> None:
        """Wake the workers once ``session`` commits (a spurious wake costs one empty claim)."""
        event.listen(session, "after_commit", lambda _session: self.notify(), once=True)

    def wait(self, seen: int, timeout: float, stop: threading.Event) -> None:
        """Until the generation moved past ``seen``, ``stop`` is set, or ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen or stop.is_set(), timeout)
