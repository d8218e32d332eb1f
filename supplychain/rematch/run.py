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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from supplychain.decide.decider import Decider
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import record_verdict
from supplychain.evidence.sbomstore import StoredSbomError, unpack
from supplychain.evidence.tlog import touch
from supplychain.interface import ScanError, ScanResult
from supplychain.rematch.plan import RematchPlan, plan_rematch, select_scans
from supplychain.rematch.revocations import AnnounceError, Announcer, LogAnnouncer, Revocation
from supplychain.stages.scanner import TrivyRunner, finding_extras

__all__ = [
    "RematchPlan",
    "RematchReport",
    "Rematcher",
    "SbomMatcher",
    "TrivySbomMatcher",
    "plan_rematch",
    "select_scans",
]

log = logging.getLogger("supplychain.rematch.run")
Keep = Callable[[models.Finding], bool]
CHUNK = 100
"""Scans written per transaction."""
PIPELINE_CONTEXTS = ("pipeline", "rematch")


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


def _key(kind: str, vuln_id: str, purl: str | None, package: str, installed: str) -> str:
    return f"{kind}|{vuln_id}|{purl or package}|{installed}"


def _package_key(purl: str | None, name: str, version: str) -> tuple[str, str]:
    base = (purl or "").split("?", 1)[0].split("#", 1)[0].lower()
    return (base, "") if base else ("", f"{name.lower()}@{version}")


def _fill_layers(session: Session, scan_id: int, rows: list[models.Finding]) -> None:
    """Give findings the layer of their component when the SBOM did not tell Trivy (not every
    SBOM generator writes Trivy's layer property); the components table always has it."""
    if all(r.layer_digest for r in rows):
        return
    layers: dict[tuple[str, str], str] = {}
    for purl, name, version, layer in session.execute(
        select(
            models.Component.purl,
            models.Component.name,
            models.Component.version,
            models.Component.layer_digest,
        ).where(models.Component.scan_id == scan_id, models.Component.layer_digest.is_not(None))
    ):
        if layer:
            layers.setdefault(_package_key(purl, name, version), layer)
            layers.setdefault(_package_key(None, name, version), layer)
    for row in rows:
        if not row.layer_digest:
            row.layer_digest = layers.get(
                _package_key(row.purl, row.package, row.installed)
            ) or layers.get(_package_key(None, row.package, row.installed))


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
            changes: list[Revocation] = []
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
                    change = self._apply(session, scan_id, result, keep)
                    rematched += 1
                    if change is not None:
                        changes.append(change)
            changed += len(changes)
            for change in changes:
                if change.previous == "allow" and change.decision == "deny":
                    revoked += 1
                    self._announce(change)
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

    def _apply(
        self, session: Session, scan_id: int, result: ScanResult, keep: Keep | None
    ) -> Revocation | None:
        scan = session.get(models.Scan, scan_id, with_for_update=True)
        if scan is None:
            return None
        image = scan.image
        old = session.scalars(
            select(models.Finding).where(
                models.Finding.scan_id == scan_id, models.Finding.kind == "vulnerability"
            )
        ).all()
        before = {_key(f.kind, f.vuln_id, f.purl, f.package, f.installed) for f in old}
        db_before = scan.db_digest
        kept = [f for f in old if keep is not None and keep(f)]
        for stale in old:
            if keep is None or not keep(stale):
                session.delete(stale)
        rows = [
            models.Finding(
                scan_id=scan_id,
                image_id=image.id,
                vuln_id=f.vuln_id[:128],
                package=f.package[:512],
                purl=f.purl,
                installed=f.installed[:255],
                fixed=f.fixed[:255] if f.fixed else None,
                severity=f.severity,
                status=f.status,
                title=f.title,
                data_source=f.data_source,
                layer_digest=f.layer_digest,
                **finding_extras(f),
            )
            for f in result.findings
        ]
        session.add_all(rows)
        _fill_layers(session, scan_id, rows)
        after = {
            _key(str(r.kind), r.vuln_id, r.purl, r.package, r.installed) for r in [*kept, *rows]
        }
        scan.db_updated_at = result.db_updated_at
        scan.db_digest = result.db_digest
        scan.scanner_version = result.scanner_version
        scan.matched_at = models.utcnow()
        session.flush()
        previous = session.scalars(
            select(models.Verdict)
            .where(
                models.Verdict.image_id == image.id,
                models.Verdict.context.in_(PIPELINE_CONTEXTS),
            )
            .order_by(models.Verdict.evaluated_at.desc(), models.Verdict.id.desc())
            .limit(1)
        ).first()
        verdict = self.decider.verdict(session, image)
        decided = record_verdict(session, verdict, image=image, scan_id=scan_id, context="rematch")
        session.flush()
        if previous is not None and previous.decision == verdict.decision:
            return None
        revocation = (
            previous is not None and previous.decision == "allow" and (verdict.decision == "deny")
        )
        change = models.VerdictChange(
            image_id=image.id,
            scan_id=scan_id,
            previous_verdict_id=previous.id if previous else None,
            verdict_id=decided.id,
            previous_decision=previous.decision if previous else None,
            decision=verdict.decision,
            revocation=revocation,
            db_digest_before=db_before,
            db_digest_after=result.db_digest,
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        session.add(change)
        session.flush()
        pinned = f"{image.host}/{image.repository}@{image.digest}"
        audit(
            session,
            self.actor,
            "verdict.revoked" if revocation else "verdict.changed",
            pinned,
            change=change.id,
            previous=change.previous_decision,
            decision=verdict.decision,
            db_digest=result.db_digest,
        )
        return Revocation(
            change.id,
            pinned,
            change.previous_decision,
            verdict.decision,
            verdict.reasons,
            result.db_digest,
            change.at.isoformat(),
        )

    def _announce(self, revocation: Revocation) -> None:
        error: str | None = None
        try:
            self.announcer.announce(revocation)
        except AnnounceError as exc:
            error = str(exc)
        with self.db.session(write=True) as session:
            change = session.get(models.VerdictChange, revocation.change_id)
            if change is not None:
                change.announced_at = None if error else models.utcnow()
                change.announce_error = error
