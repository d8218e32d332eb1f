"""The queries :mod:`supplychain.evidence.load` builds facts from: latest scans, waivers, the
last job failure, and rows by scan id, each for many images in a few queries.

``as_of`` (default None: now) reads what was recorded by that time (see :mod:`.load`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.interface import Waiver

__all__ = [
    "in_chunks",
    "job_failure",
    "latest_scan_id",
    "latest_scans",
    "load_waivers",
    "scan_rows",
    "waivers_many",
]


def latest_scan_id(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> int | None:
    """The id of the image's latest finished scan (finished by ``as_of`` when given)."""
    query = select(models.Scan.id).where(
        models.Scan.image_id == image.id, models.Scan.finished_at.is_not(None)
    )
    if as_of is not None:
        query = query.where(models.Scan.finished_at <= as_of)
    return session.scalars(
        query.order_by(models.Scan.finished_at.desc(), models.Scan.id.desc()).limit(1)
    ).first()


def job_failure(session: Session, image: models.Image, as_of: datetime | None) -> str | None:
    """The last error of the image's job while it has no scan (failed or waiting to retry);
    with ``as_of``, the last attempt's failure recorded by then."""
    job = (
        models.Job.host == image.host,
        models.Job.repository == image.repository,
        models.Job.digest == image.digest,
    )
    if as_of is not None:
        return session.scalars(
            select(models.JobFailure.reason)
            .join(models.Job, models.Job.id == models.JobFailure.job_id)
            .where(*job, models.JobFailure.at <= as_of)
            .order_by(models.JobFailure.at.desc(), models.JobFailure.id.desc())
            .limit(1)
        ).first()
    return session.scalars(
        select(models.Job.last_error)
        .where(*job, models.Job.last_error.is_not(None))
        .order_by(models.Job.updated_at.desc())
        .limit(1)
    ).first()


def load_waivers(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> tuple[Waiver, ...]:
    """The waivers that may cover ``image`` (its digest's, and every repository pattern's),
    revoked ones left out (with ``as_of``: created by then and not revoked by then); which apply
    at a given time is the decision's to say."""
    return waivers_many(session, [image.digest], as_of)[image.digest]


def waivers_many(
    session: Session, digests: Sequence[str], as_of: datetime | None = None
) -> dict[str, tuple[Waiver, ...]]:
    """:func:`load_waivers` for several image digests, in one query."""
    scope = models.Waiver.digest.in_(sorted(set(digests))) | models.Waiver.repository.is_not(None)
    live: ColumnElement[bool]
    if as_of is None:
        live = models.Waiver.revoked_at.is_(None)
    else:
        live = (models.Waiver.created_at <= as_of) & (
            models.Waiver.revoked_at.is_(None) | (models.Waiver.revoked_at > as_of)
        )
    rows = session.scalars(
        select(models.Waiver).where(live, scope).order_by(models.Waiver.id)
    ).all()
    waivers = [
        Waiver(
            w.id,
            w.digest,
            w.repository,
            w.cve,
            w.package,
            w.rule,
            w.owner,
            w.reason,
            w.ticket,
            w.expires_at,
            w.justification,
        )
        for w in rows
    ]
    return {
        d: tuple(w for w in waivers if w.repository is not None or w.digest == d) for d in digests
    }


def in_chunks(ids: Sequence[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def latest_scans(
    session: Session, image_ids: Sequence[int], as_of: datetime | None = None
) -> dict[int, int]:
    """:func:`latest_scan_id` for several images, in one query per 500."""
    found: dict[int, int] = {}
    finished: ColumnElement[bool] = models.Scan.finished_at.is_not(None)
    if as_of is not None:
        finished = finished & (models.Scan.finished_at <= as_of)
    for ids in in_chunks(sorted(set(image_ids))):
        ranked = (
            select(
                models.Scan.image_id,
                models.Scan.id,
                func.row_number()
                .over(
                    partition_by=models.Scan.image_id,
                    order_by=(models.Scan.finished_at.desc(), models.Scan.id.desc()),
                )
                .label("rank"),
            )
            .where(models.Scan.image_id.in_(ids), finished)
            .subquery()
        )
        found.update(
            (int(i), int(s))
            for i, s in session.execute(
                select(ranked.c.image_id, ranked.c.id).where(ranked.c.rank == 1)
            )
        )
    return found


def scan_rows(
    session: Session, model: Any, columns: Sequence[str], scan_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The ``columns`` of ``model``'s rows for ``scan_ids`` by scan id, in id order (rows, not
    ORM objects: tens of thousands of components load without building an object each)."""
    out: dict[int, list[Any]] = {}
    selected = [getattr(model, name) for name in ("scan_id", *columns)]
    for ids in in_chunks(sorted(set(scan_ids))):
        for row in session.execute(
            select(*selected).where(model.scan_id.in_(ids)).order_by(model.id)
        ):
            out.setdefault(row.scan_id, []).append(row)
    return out
