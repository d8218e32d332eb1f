"""Gate calls waiting on a pending image without holding a thread.

A waiting call parks on an asyncio event keyed by the digest it waits for. One poller task per
process looks for scans recorded since its last look (an indexed range query on ``scans.id``):
every ``recheck_seconds`` for workers in other processes, and at once when an in-process worker
calls :meth:`Waits.kick` after a job. It wakes the calls waiting on the scanned image's digest and
on its image index. A woken call asks the gate again with ``wait=0``; the gate decides, the API
only waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select

from supplychain.decide.gate import Answered, Gate, GateAnswer
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.models import utcnow
from supplychain.metrics import GATE_WAITING

__all__ = ["MAX_WAIT", "TooManyWaiters", "Waits"]

log = logging.getLogger(__name__)

MAX_WAIT = 600.0
"""Longest wait a gate call may ask for."""
LOOKBACK = 256
"""Scan ids re-read behind the newest seen: PostgreSQL may commit ids out of order."""
EXPANDED_LOOKBACK = timedelta(seconds=5)
"""Index expansions are looked for this far back again (commits may land out of order)."""
RECENT = 4096
"""Digests remembered as recently scanned, for calls that were deciding while a scan landed."""
GATE_THREADS = 4
"""Threads deciding gate calls. The decision is CPU-bound under one GIL, and each thread holds
a pooled database connection: a few threads keep the pool warm, where the framework's 40-thread
pool made the connection pool open and close connections under load. On SQLite a pinned
digest whose facts are cached is decided on the event loop instead (:meth:`Gate.answer_cached`):
its one read is a local file's, and each hop to a thread and back waited for the GIL."""


class TooManyWaiters(Exception):
    """Every waiting slot is taken; ``retry_after``: seconds to tell the caller."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} gate calls are already waiting; retry later")
        self.retry_after = retry_after


class Waits:
    """Waiting gate calls of one process, and the poller that wakes them."""

    def __init__(
        self,
        db: Database,
        *,
        recheck_seconds: float,
        max_waiters: int,
        decide_on_loop: bool | None = None,
    ) -> None:
        """``decide_on_loop``: cached answers decided on the event loop (default: on SQLite,
        whose reads cost microseconds; PostgreSQL's are round trips, on threads)."""
        self.db = db
        self.inline = not db.is_postgres if decide_on_loop is None else decide_on_loop
        self.recheck_seconds = recheck_seconds
        self.max_waiters = max_waiters
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._count = 0
        self._generation = 0
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._seen: set[int] = set()
        self._floor = 0
        self._expanded_since = utcnow()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kicked = asyncio.Event()
        self._lock = threading.Lock()
        self._deciders = ThreadPoolExecutor(GATE_THREADS, thread_name_prefix="gate")

    def close(self) -> None:
        """Stop the deciding threads once the calls they run are answered."""
        self._deciders.shutdown(wait=True)

    async def _decide(self, gate: Gate, image: str, platform: str | None) -> GateAnswer:
        return await gate.decide_async(image, self._run, platform=platform, inline=self.inline)

    def _run(self, call: Callable[[], Answered]) -> Awaitable[Answered]:
        return asyncio.get_running_loop().run_in_executor(self._deciders, call)

    def kick(self) -> None:
        """Look for new scans now (thread-safe: in-process workers call it after each job)."""
        with self._lock:
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._kicked.set)

    async def run(self) -> None:
        """The poller; runs until cancelled."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
        while True:  # the database may be down at start: keep trying
            try:
                self._floor = await run_in_threadpool(self._newest)
                break
            except Exception as exc:
                log.warning("gate wait poll failed: %s", type(exc).__name__)
                await asyncio.sleep(self.recheck_seconds)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kicked.wait(), self.recheck_seconds)
            self._kicked.clear()
            try:
                digests = await run_in_threadpool(self._scanned)
            except Exception as exc:  # the database may be down for a while: keep polling
                log.warning("gate wait poll failed: %s", type(exc).__name__)
                continue
            if digests:
                self._wake(digests)

    async def answer(self, gate: Gate, image: str, wait: float, platform: str | None) -> GateAnswer:
        """The gate's answer, waiting up to ``wait`` seconds while it is ``pending``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT)
        generation = self._generation
        answer = await self._decide(gate, image, platform)
        if answer.decision != "pending" or answer.digest is None or wait <= 0:
            return answer
        with self._slot():
            while answer.decision == "pending" and answer.digest is not None:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._wait(answer.digest, generation, remaining):
                    break
                generation = self._generation
                answer = await self._decide(gate, image, platform)
        return answer

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._count >= self.max_waiters:
            raise TooManyWaiters(self.max_waiters, max(1, round(self.recheck_seconds * 5)))
        self._count += 1
        GATE_WAITING.inc()
        try:
            yield
        finally:
            self._count -= 1
            GATE_WAITING.dec()

    async def _wait(self, digest: str, since: int, timeout: float) -> bool:
        """True when ``digest`` was scanned after generation ``since``; False on timeout."""
        if self._recent.get(digest, -1) > since:
            return True
        event = asyncio.Event()
        self._waiting.setdefault(digest, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiting.get(digest)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[digest]

    def _wake(self, digests: set[str]) -> None:
        self._generation += 1
        for digest in digests:
            self._recent[digest] = self._generation
            self._recent.move_to_end(digest)
            for event in self._waiting.get(digest, ()):
                event.set()
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def _newest(self) -> int:
        with self.db.session() as session:
            return max(0, (session.scalar(select(func.max(models.Scan.id))) or 0) - LOOKBACK)

    def _scanned(self) -> set[str]:
        """Digests of scans not seen before, the indexes listing them, and indexes expanded
        since the last look; ids may commit out of order."""
        with self.db.session() as session:
            rows = session.execute(
                select(models.Scan.id, models.Image.digest)
                .join(models.Image, models.Scan.image_id == models.Image.id)
                .where(models.Scan.id > self._floor)
            ).all()
            digests: set[str] = set()
            for scan_id, digest in rows:
                if scan_id in self._seen:
                    continue
                self._seen.add(scan_id)
                digests.add(digest)
            since, self._expanded_since = self._expanded_since, utcnow() - EXPANDED_LOOKBACK
            digests |= set(
                session.scalars(select(models.Image.digest).where(models.Image.expanded_at > since))
            )
            if digests:
                parents = (
                    select(models.Image.digest)
                    .join(models.IndexEntry, models.IndexEntry.index_id == models.Image.id)
                    .where(models.IndexEntry.digest.in_(sorted(digests)))
                )
                digests |= set(session.scalars(parents))
        if self._seen:
            self._floor = max(self._floor, max(self._seen) - LOOKBACK)
            self._seen = {i for i in self._seen if i > self._floor}
        return digests
