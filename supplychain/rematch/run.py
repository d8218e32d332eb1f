"""Rematching stored SBOMs when the advisory DB changes: no image pull.

For each image's latest scan (or only those whose components the changed advisories name, see
:func:`select_scans`) the stored CycloneDX SBOM is matched again (``trivy sbom``), the scan's
vulnerability findings are replaced by the new ones (secrets, found in layers, stay), the one
decision (:mod:`supplychain.decide.decision`, VEX included) is made again on the facts, and every
decision that differs from the image's previous one is stored as a
:class:`~supplychain.evidence.models.VerdictChange`. An ``allow`` that became ``deny`` is a
revocation: audited, logged and announced (:mod:`supplychain.rematch.revocations`).

A match that fails (Trivy missing, crashing, timing out, corrupt DB) changes nothing for that image
and is reported; it never produces an ``allow``.
"""

from __future__ import annotations

import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from supplychain.decide.decider import Decider
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.sbomstore import StoredSbomError, unpack
from supplychain.evidence.tlog import touch
from supplychain.interface import ScanError, ScanResult
from supplychain.rematch.plan import RematchPlan, plan_rematch, select_scans
from supplychain.rematch.record import Keep, Rematched, record_chunk
from supplychain.rematch.revocations import AnnounceError, Announcer, LogAnnouncer, Revocation
from supplychain.stages.scanner import TrivyRunner

__all__ = [
    "Keep",
    "RematchPlan",
    "RematchReport",
    "Rematcher",
    "SbomMatcher",
    "TrivySbomMatcher",
    "plan_rematch",
    "select_scans",
]

log = logging.getLogger("supplychain.rematch.run")
CHUNK = 250
"""Scans written per transaction (their facts loaded and their rows written together)."""


class SbomMatcher(ABC):
    """Matches a stored SBOM against the current advisory DB."""

    @abstractmethod
    def match(self, document: bytes) -> ScanResult:
        """Findings for ``document``; raise :class:`ScanError` on failure."""


class TrivySbomMatcher(SbomMatcher):
    """``trivy sbom`` over the document, one process per SBOM, on one DB snapshot."""

    def __init__(self, runner: TrivyRunner) -> None:
        self.runner = runner

    def match(self, document: bytes) -> ScanResult:
        return self.runner.scan_sbom(document)


@dataclass(frozen=True)
class RematchReport:
    """What one rematch run did."""

    selected: int
    """Scans selected for rematching."""
    rematched: int
    """Scans matched and updated."""
    changed: int
    """Verdicts that changed."""
    revocations: int
    """Changes from allow to deny."""
    failed: tuple[str, ...]
    """``scan <id>: <reason>`` for each scan that could not be matched (nothing changed)."""
    seconds: float
    """Wall time."""


class Rematcher:
    """Rematches stored SBOMs, records findings, verdicts and changes, announces revocations."""

    def __init__(
        self,
        db: Database,
        matcher: SbomMatcher,
        decider: Decider,
        announcer: Announcer | None = None,
        *,
        workers: int = 2,
        actor: str = "rematch",
    ) -> None:
        self.db = db
        self.matcher = matcher
        self.decider = decider
        self.announcer = announcer or LogAnnouncer()
        self.workers = max(1, workers)
        self.actor = actor

    def _match(self, scan_id: int) -> ScanResult | ScanError:
        with self.db.session() as session:
            stored = session.execute(
                select(models.Scan.sbom, models.Scan.sbom_encoding).where(models.Scan.id == scan_id)
            ).one_or_none()
            try:
                document = unpack(*stored) if stored else None
            except StoredSbomError as exc:
                return ScanError(str(exc))
        if document is None:
            return ScanError("the scan has no stored SBOM")
        try:
            return self.matcher.match(document)
        except ScanError as exc:
            return exc

    def _results(self, scan_ids: list[int]) -> Iterator[tuple[int, ScanResult | ScanError]]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="rematch") as pool:
            yield from zip(scan_ids, pool.map(self._match, scan_ids), strict=True)

    def run(self, scan_ids: list[int]) -> RematchReport:
        """Rematch ``scan_ids`` whole, one SBOM per Trivy run."""
        return self.record(((i, r, None) for i, r in self._results(scan_ids)), len(scan_ids))

    def record(
        self,
        results: Iterable[tuple[int, ScanResult | ScanError, Keep | None]],
        selected: int,
    ) -> RematchReport:
        """Store each ``(scan, new findings or error, rows to keep)``; announce revocations.

        ``keep`` (None: none) says which of the scan's vulnerability findings stay as they are:
        a partial rematch replaces only the findings of the packages it matched again. Scans are
        written :data:`CHUNK` to a transaction; revocations are announced once it committed.
        """
        start = time.perf_counter()
        rematched = changed = revoked = 0
        failed: list[str] = []
        items = iter(results)
        while chunk := list(itertools.islice(items, CHUNK)):
            matched: list[Rematched] = []
            with self.db.session(write=True) as session:
                for scan_id, result, keep in chunk:
                    if isinstance(result, ScanError):
                        failed.append(f"scan {scan_id}: {result}")
                        log.error("rematch failed", extra={"scan": scan_id, "error": str(result)})
                        audit(
                            session,
                            self.actor,
                            "rematch.failed",
                            None,
                            scan=scan_id,
                            error=str(result),
                        )
                        continue
                    matched.append(Rematched(scan_id, result, keep))
                changes = record_chunk(session, self.decider, self.actor, matched)
                rematched += len(matched)
            changed += len(changes)
            revocations = [c for c in changes if c.previous == "allow" and c.decision == "deny"]
            revoked += len(revocations)
            self._announce(revocations)
        seconds = round(time.perf_counter() - start, 3)
        return RematchReport(selected, rematched, changed, revoked, tuple(failed), seconds)

    def advance(self, scan_ids: list[int], db_digest: str, updated_at: datetime | None) -> None:
        """Record that ``scan_ids`` were (provably unchanged) matched against the new DB."""
        with self.db.session(write=True) as session:
            for start in range(0, len(scan_ids), 1000):
                session.execute(
                    update(models.Scan)
                    .where(models.Scan.id.in_(scan_ids[start : start + 1000]))
                    .values(
                        db_digest=db_digest, db_updated_at=updated_at, matched_at=models.utcnow()
                    )
                )
            for scan_id in scan_ids:  # a Core update: the log's session hook does not see it
                touch(session, "scans", scan_id)
            audit(session, self.actor, "rematch.advanced", None, scans=len(scan_ids), db=db_digest)

    def _announce(self, revocations: list[Revocation]) -> None:
        """Announce each revocation, then record the outcomes in one transaction."""
        outcomes: list[dict[str, object]] = []
        for revocation in revocations:
            error: str | None = None
            try:
                self.announcer.announce(revocation)
            except AnnounceError as exc:
                error = str(exc)
            outcomes.append(
                {
                    "id": revocation.change_id,
                    "announced_at": None if error else models.utcnow(),
                    "announce_error": error,
                }
            )
        if outcomes:
            with self.db.session(write=True) as session:
                session.execute(update(models.VerdictChange), outcomes)
