"""Which stored SBOMs a rematch must look at: every image's latest scan, narrowed by the DB diff.

One query over the components table turns the packages a DB change names
(:func:`supplychain.rematch.dbdiff.changed_packages`) into the scans to rematch; the other
scans' matches
provably cannot change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from supplychain.evidence import models
from supplychain.rematch.dbdiff import Key, changed_packages

__all__ = ["RematchPlan", "latest_scan_ids", "plan_rematch", "select_scans"]


def latest_scan_ids(
    session: Session, *, since: datetime | None = None, stale_for: str | None = None
) -> list[int]:
    """Each image's latest finished scan that holds an SBOM.

    ``since``: only those finished since then; ``stale_for``: only those not matched against the
    DB of that digest yet.
    """
    ranked = select(
        models.Scan.id,
        models.Scan.finished_at,
        models.Scan.db_digest,
        func.row_number()
        .over(
            partition_by=models.Scan.image_id,
            order_by=(models.Scan.finished_at.desc(), models.Scan.id.desc()),
        )
        .label("rank"),
    ).where(models.Scan.finished_at.is_not(None), models.Scan.sbom.is_not(None))
    sub = ranked.subquery()
    query = select(sub.c.id).where(sub.c.rank == 1)
    if since is not None:
        query = query.where(sub.c.finished_at >= since)
    if stale_for is not None:
        query = query.where(or_(sub.c.db_digest.is_(None), sub.c.db_digest != stale_for))
    return list(session.scalars(query.order_by(sub.c.id)))


def select_scans(
    session: Session,
    *,
    since: datetime | None = None,
    stale_for: str | None = None,
    packages: Iterable[tuple[str, str]] | None = None,
) -> list[int]:
    """Latest scans to rematch: all, or those with a component ``(type, name)`` in ``packages``
    (name ``*``: any component of that type; ``src:<name>``: an OS package built from that source
    package, or any OS package of that type whose source was not recorded).

    ``packages`` comes from the DB diff (:func:`supplychain.rematch.dbdiff.changed_packages`):
    one query
    over the components table narrows the work to the SBOMs the changed advisories can touch.
    """
    latest = latest_scan_ids(session, since=since, stale_for=stale_for)
    if packages is None:
        return latest
    hits = _naming(session, packages) if latest else set()
    return [scan_id for scan_id in latest if scan_id in hits]


def _naming(session: Session, packages: Iterable[tuple[str, str]]) -> set[int]:
    """The scans with a component ``(type, name)`` in ``packages`` (see :func:`select_scans`)."""
    wanted = {(kind, name.lower()) for kind, name in packages}
    every = sorted({kind for kind, name in wanted if name == "*"})
    rest = [pair for pair in wanted if pair[1] != "*" and pair[0] not in every]
    sources = sorted(
        (kind, name.removeprefix("src:")) for kind, name in rest if name.startswith("src:")
    )
    exact = sorted(pair for pair in rest if not pair[1].startswith("src:"))
    if not (every or exact or sources):
        return set()
    pair = tuple_(models.Component.type, func.lower(models.Component.name))
    by_source = tuple_(models.Component.type, func.lower(models.Component.source_name))
    conditions: list[ColumnElement[bool]] = [models.Component.type.in_(every)] if every else []
    conditions += [pair.in_(exact[i : i + 500]) for i in range(0, len(exact), 500)]
    conditions += [by_source.in_(sources[i : i + 500]) for i in range(0, len(sources), 500)]
    if sources:  # rows recorded before source names were: never miss one
        unknown = models.Component.source_name.is_(None)
        conditions.append(unknown & models.Component.type.in_(sorted({k for k, _ in sources})))
    return set(session.scalars(select(models.Component.scan_id).where(or_(*conditions)).distinct()))


@dataclass(frozen=True)
class RematchPlan:
    """Which stale scans need a rematch, how, and which the DB diff proves unchanged."""

    match: tuple[int, ...]
    """Scans whose SBOM names a package the changed advisories touch (or that cannot be told)."""
    advance: tuple[int, ...]
    """Scans whose findings cannot change: only their DB provenance moves to the new DB."""
    whole: tuple[int, ...] = ()
    """The scans of :attr:`match` to rematch whole (an OS package changed, or no DB diff); the
    others are rematched for the language packages of :attr:`packages` only."""
    packages: frozenset[Key] = frozenset()
    """The changed language packages (union over the old DBs), for the partial rematch."""


def _whole_sbom(key: Key) -> bool:
    """OS advisories (keyed ``src:<source>``) need the SBOM's OS component: rematch whole."""
    return key[1] == "*" or key[1].startswith("src:")


def plan_rematch(
    session: Session, snapshots: Path, current_digest: str, current_db: Path
) -> RematchPlan:
    """Plan a rematch of the scans not matched against ``current_digest`` yet.

    Scans are grouped by the DB they were matched with; when that DB's snapshot is still in the
    store (``snapshots/<hex>/db/trivy.db``) the two DBs are diffed and one query over the
    components table picks the scans to match: those naming a changed OS source package whole,
    those naming only changed language packages for these packages alone. Without the old DB,
    every scan of the group is matched whole.
    """
    stale = latest_scan_ids(session, stale_for=current_digest)
    groups: dict[str | None, list[int]] = {}
    for start in range(0, len(stale), 1000):
        for scan_id, digest in session.execute(
            select(models.Scan.id, models.Scan.db_digest).where(
                models.Scan.id.in_(stale[start : start + 1000])
            )
        ):
            groups.setdefault(digest, []).append(scan_id)
    whole: list[int] = []
    partial: list[int] = []
    advance: list[int] = []
    packages: set[Key] = set()
    for digest, ids in groups.items():
        old = snapshots / (digest or "").removeprefix("sha256:") / "db" / "trivy.db"
        diff = changed_packages(old, current_db) if digest and old.is_file() else None
        if diff is None or not diff.narrowable:
            whole += ids
            continue
        system = [k for k in diff.packages if _whole_sbom(k)]
        language = [k for k in diff.packages if not _whole_sbom(k)]
        by_system = _naming(session, system)
        by_language = _naming(session, language)
        packages.update(language)
        for scan_id in ids:
            if scan_id in by_system:
                whole.append(scan_id)
            elif scan_id in by_language:
                partial.append(scan_id)
            else:
                advance.append(scan_id)
    return RematchPlan(
        tuple(sorted(whole + partial)),
        tuple(sorted(advance)),
        tuple(sorted(whole)),
        frozenset(packages) if partial else frozenset(),
    )
