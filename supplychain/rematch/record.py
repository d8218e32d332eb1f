"""Recording a chunk of rematched scans in one transaction with a few statements.

For every scan of the chunk: its vulnerability findings are replaced by the new ones (all of them,
or for a partial rematch those of the packages matched again), its DB provenance moves to the new
DB, the one decision is made again on the facts as now recorded
(:meth:`~supplychain.decide.decider.Decider.decide` over
:func:`~supplychain.evidence.load.load_image_facts_many`), the verdict is stored, and when it
differs from the image's previous pipeline or rematch verdict a
:class:`~supplychain.evidence.models.VerdictChange` is stored and audited.

What was one set of queries and a flush per scan is a few queries per chunk: the facts of all its
images are loaded together, the rows are written by one flush per table. The result is the same
as recording the scans one by one, since every scan of a chunk belongs to a different image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from supplychain.decide.decider import Decider
from supplychain.evidence import models
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import finding_fields, record_verdict
from supplychain.interface import ScanResult
from supplychain.rematch.revocations import Revocation

__all__ = ["PIPELINE_CONTEXTS", "Keep", "Rematched", "record_chunk"]

Keep = Callable[[models.Finding], bool]
PIPELINE_CONTEXTS = ("pipeline", "rematch")
"""The verdict contexts a rematch compares with (gate answers are not the image's verdict)."""
_IN = 500
"""Values per ``IN (…)`` list."""


@dataclass(frozen=True)
class Rematched:
    """One scan's new findings, to record."""

    scan_id: int
    """The scan matched again."""
    result: ScanResult
    """The new match."""
    keep: Keep | None
    """Which of its vulnerability findings stay as they are (None: none)."""


def _key(kind: str, vuln_id: str, purl: str | None, package: str, installed: str) -> str:
    return f"{kind}|{vuln_id}|{purl or package}|{installed}"


def _package_key(purl: str | None, name: str, version: str) -> tuple[str, str]:
    base = (purl or "").split("?", 1)[0].split("#", 1)[0].lower()
    return (base, "") if base else ("", f"{name.lower()}@{version}")


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    ordered = sorted(set(ids))
    return [ordered[i : i + _IN] for i in range(0, len(ordered), _IN)]


def _fill_layers(session: Session, rows: dict[int, list[models.Finding]]) -> None:
    """Give findings the layer of their component when the SBOM did not tell Trivy (not every
    SBOM generator writes Trivy's layer property); the components table always has it."""
    wanted = [scan_id for scan_id, found in rows.items() if any(not r.layer_digest for r in found)]
    layers: dict[int, dict[tuple[str, str], str]] = {}
    for ids in _chunks(wanted):
        for scan_id, purl, name, version, layer in session.execute(
            select(
                models.Component.scan_id,
                models.Component.purl,
                models.Component.name,
                models.Component.version,
                models.Component.layer_digest,
            )
            .where(models.Component.scan_id.in_(ids), models.Component.layer_digest.is_not(None))
            .order_by(models.Component.id)
        ):
            if layer:
                mine = layers.setdefault(scan_id, {})
                mine.setdefault(_package_key(purl, name, version), layer)
                mine.setdefault(_package_key(None, name, version), layer)
    for scan_id, found in layers.items():
        for row in rows[scan_id]:
            if not row.layer_digest:
                row.layer_digest = found.get(
                    _package_key(row.purl, row.package, row.installed)
                ) or found.get(_package_key(None, row.package, row.installed))


def _previous(session: Session, image_ids: Sequence[int]) -> dict[int, models.Verdict]:
    """Each image's latest pipeline or rematch verdict."""
    out: dict[int, models.Verdict] = {}
    for ids in _chunks(image_ids):
        ranked = (
            select(
                models.Verdict.id,
                func.row_number()
                .over(
                    partition_by=models.Verdict.image_id,
                    order_by=(models.Verdict.evaluated_at.desc(), models.Verdict.id.desc()),
                )
                .label("rank"),
            )
            .where(models.Verdict.image_id.in_(ids), models.Verdict.context.in_(PIPELINE_CONTEXTS))
            .subquery()
        )
        latest = select(ranked.c.id).where(ranked.c.rank == 1)
        for verdict in session.scalars(select(models.Verdict).where(models.Verdict.id.in_(latest))):
            if verdict.image_id is not None:
                out[verdict.image_id] = verdict
    return out


def record_chunk(
    session: Session, decider: Decider, actor: str, items: Sequence[Rematched]
) -> list[Revocation]:
    """Record ``items`` in ``session``, in order; the verdict changes made."""
    scan_ids = [item.scan_id for item in items]
    scans: dict[int, tuple[int, str | None]] = {}
    for ids in _chunks(scan_ids):
        for scan_id, image_id, db_digest in session.execute(
            select(models.Scan.id, models.Scan.image_id, models.Scan.db_digest)
            .where(models.Scan.id.in_(ids))
            .with_for_update()
        ):
            scans[scan_id] = (image_id, db_digest)
    rounds: list[list[Rematched]] = []  # one scan per image a round: each sees the one before
    for item in items:
        if item.scan_id in scans:
            image_id = scans[item.scan_id][0]
            free = [r for r in rounds if all(scans[i.scan_id][0] != image_id for i in r)]
            if free:
                free[0].append(item)
            else:
                rounds.append([item])
    return [c for batch in rounds for c in _round(session, decider, actor, batch, scans)]


def _round(
    session: Session,
    decider: Decider,
    actor: str,
    items: Sequence[Rematched],
    scans: dict[int, tuple[int, str | None]],
) -> list[Revocation]:
    """Record ``items``, one scan per image (``scans``: image and DB digest before, by scan)."""
    scan_ids = [item.scan_id for item in items]
    images = {
        image.id: image
        for ids in _chunks([image_id for image_id, _ in scans.values()])
        for image in session.scalars(select(models.Image).where(models.Image.id.in_(ids)))
    }
    old: dict[int, list[models.Finding]] = {}
    for ids in _chunks(scan_ids):
        for finding in session.scalars(
            select(models.Finding)
            .where(models.Finding.scan_id.in_(ids), models.Finding.kind == "vulnerability")
            .order_by(models.Finding.id)
        ):
            old.setdefault(finding.scan_id, []).append(finding)
    stale: list[models.Finding] = []
    new: dict[int, list[models.Finding]] = {}
    kept: dict[int, list[models.Finding]] = {}
    now = models.utcnow()
    provenance: list[dict[str, object]] = []
    for item in items:
        image_id = scans[item.scan_id][0]
        for row in old.get(item.scan_id, []):
            if item.keep is not None and item.keep(row):
                kept.setdefault(item.scan_id, []).append(row)
            else:
                stale.append(row)
        new[item.scan_id] = [
            models.Finding(scan_id=item.scan_id, image_id=image_id, **finding_fields(f))
            for f in item.result.findings
        ]
        provenance.append(
            {
                "id": item.scan_id,
                "db_updated_at": item.result.db_updated_at,
                "db_digest": item.result.db_digest,
                "scanner_version": item.result.scanner_version,
                "matched_at": now,
            }
        )
    for ids in _chunks([row.id for row in stale]):
        session.execute(
            delete(models.Finding).where(models.Finding.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
    for row in stale:  # gone: SQLite may hand their ids to the new rows
        session.expunge(row)
    _fill_layers(session, new)
    session.add_all(row for rows in new.values() for row in rows)
    if provenance:
        session.execute(update(models.Scan), provenance)
    session.flush()
    chosen = [images[scans[item.scan_id][0]] for item in items]
    previous = _previous(session, [image.id for image in chosen])
    facts = decider.load_many(session, chosen)
    decided: list[tuple[Rematched, models.Image, models.Verdict]] = []
    verdicts = {}
    for item, image in zip(items, chosen, strict=True):
        verdicts[item.scan_id] = verdict = decider.decide(facts[image.id])
        recorded = record_verdict(
            session, verdict, image=image, scan_id=item.scan_id, context="rematch"
        )
        decided.append((item, image, recorded))
    session.flush()
    changes: list[tuple[models.VerdictChange, models.Image, Rematched]] = []
    for item, image, recorded in decided:
        before_row = previous.get(image.id)
        if before_row is not None and before_row.decision == recorded.decision:
            continue
        before = {
            _key(f.kind, f.vuln_id, f.purl, f.package, f.installed)
            for f in old.get(item.scan_id, [])
        }
        after = {
            _key(str(f.kind), f.vuln_id, f.purl, f.package, f.installed)
            for f in [*kept.get(item.scan_id, []), *new[item.scan_id]]
        }
        revocation = (
            before_row is not None
            and before_row.decision == "allow"
            and (recorded.decision == "deny")
        )
        change = models.VerdictChange(
            image_id=image.id,
            scan_id=item.scan_id,
            previous_verdict_id=before_row.id if before_row else None,
            verdict_id=recorded.id,
            previous_decision=before_row.decision if before_row else None,
            decision=recorded.decision,
            revocation=revocation,
            db_digest_before=scans[item.scan_id][1],
            db_digest_after=item.result.db_digest,
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        changes.append((change, image, item))
    session.add_all(change for change, _, _ in changes)
    session.flush()
    out: list[Revocation] = []
    for change, image, item in changes:
        pinned = f"{image.host}/{image.repository}@{image.digest}"
        audit(
            session,
            actor,
            "verdict.revoked" if change.revocation else "verdict.changed",
            pinned,
            change=change.id,
            previous=change.previous_decision,
            decision=change.decision,
            db_digest=item.result.db_digest,
        )
        out.append(
            Revocation(
                change.id,
                pinned,
                change.previous_decision,
                change.decision,
                verdicts[item.scan_id].reasons,
                item.result.db_digest,
                change.at.isoformat(),
            )
        )
    session.flush()
    return out
