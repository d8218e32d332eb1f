"""Recorded facts of image manifests kept in memory, checked against the database per read.

Loading an image's facts (:func:`~supplychain.evidence.load.load_image_facts`: scan, findings,
components, signatures, VEX, waivers) is a dozen ORM queries; a hot gate asks for the same
digest again and again. This cache keeps the loaded facts per image and, on every read, runs one
small query for the facts' *fingerprint*: the image's latest finished scan (its id, and when and
against which advisory DB it was last matched, which rematch changes in place), the count and
newest id of the VEX statements about the digest, and the newest id, revocation count and
newest revocation of all waivers. Any recorded change to those facts changes the fingerprint, so
the facts used are never older than the reader's own transaction: a waiver or VEX statement
committed before a gate call applies to that call.

Only facts are cached, never a verdict: the one decision function runs on every call with the
policy in force and the clock, so a waiver's expiry applies at its moment. Image indexes and
images without a finished scan are not cached (their callers load them as before).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, func, select
from sqlalchemy.orm import Session

from supplychain.decide.decision import ImageFacts
from supplychain.evidence import models
from supplychain.evidence.driver import driver_rows
from supplychain.evidence.load import load_image_facts

__all__ = ["FactCache", "ScannedImage"]

SIZE = 256
"""Images whose facts are kept, least recently used dropped first (an image's facts include its
SBOM's components: a few MB for a large image)."""

Fingerprint = tuple[Any, ...]

_VEX = models.VexStatement
_WAIVER = models.Waiver
_FIND = (
    select(
        models.Image.id,
        models.Image.media_type,
        models.Scan.id,
        models.Scan.matched_at,
        models.Scan.db_digest,
        select(func.count(_VEX.id)).where(_VEX.product == bindparam("digest")).scalar_subquery(),
        select(func.max(_VEX.id)).where(_VEX.product == bindparam("digest")).scalar_subquery(),
        select(func.max(_WAIVER.id)).scalar_subquery(),
        select(func.count(_WAIVER.revoked_at)).scalar_subquery(),
        select(func.max(_WAIVER.revoked_at)).scalar_subquery(),
    )
    .join(models.Scan, models.Scan.image_id == models.Image.id)
    .where(
        models.Image.host == bindparam("host"),
        models.Image.repository == bindparam("repository"),
        models.Image.digest == bindparam("digest"),
        models.Scan.finished_at.is_not(None),
    )
    .order_by(models.Scan.finished_at.desc(), models.Scan.id.desc())
    .limit(1)
)
"""One statement, built once: the image, its latest finished scan (ordered as
:func:`~supplychain.evidence.load.latest_scan_id` orders them) and the fingerprint of its facts."""


class _Compiled:
    """:data:`_FIND` compiled for one dialect, run on the driver's cursor.

    SQLAlchemy's execution of even a cached compiled statement (parameter processing, events,
    the result's type processors) cost ~0.3 ms per call, ten times the query itself, on the
    gate's hottest path; here it costs a dict look-up. The row is used as it comes from the
    driver: the fingerprint is only ever compared with others read the same way.
    """

    def __init__(self, dialect: Dialect) -> None:
        compiled = _FIND.compile(dialect=dialect)
        self.sql = compiled.string
        self.defaults = dict(compiled.params)  # LIMIT/OFFSET
        self.order = tuple(compiled.positiontup or ()) if compiled.positional else None

    def parameters(self, values: dict[str, str]) -> Any:
        params = {**self.defaults, **values}
        return params if self.order is None else [params[name] for name in self.order]


_COMPILED: dict[tuple[str, str], _Compiled] = {}
"""By dialect and driver (their SQL and parameter style)."""


def _run_find(connection: Connection, values: dict[str, str]) -> tuple[Any, ...] | None:
    dialect = connection.dialect
    key = (dialect.name, dialect.driver)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _Compiled(dialect)
    # read to the end: the statement is done, its snapshot released
    rows = driver_rows(connection, compiled.sql, compiled.parameters(values))
    return tuple(rows[0]) if rows else None


class ScannedImage:
    """A recorded image manifest with a finished scan, as one query finds it."""

    __slots__ = ("fingerprint", "id", "media_type")

    def __init__(self, image_id: int, media_type: str | None, fingerprint: Fingerprint) -> None:
        self.id = image_id
        """The image row's id."""
        self.media_type = media_type
        """Its manifest media type."""
        self.fingerprint = fingerprint
        """What the cached facts must have been loaded under."""


class FactCache:
    """Facts of scanned image manifests, reused while their fingerprint is unchanged."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[int, tuple[Fingerprint, ImageFacts]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        """Facts loaded from the database (cache misses), for tests."""

    def find(
        self, connection: Connection, host: str, repository: str, digest: str
    ) -> ScannedImage | None:
        """The recorded manifest ``host/repository@digest`` with its latest finished scan and
        the fingerprint of its facts; None when not recorded or not scanned yet."""
        row = _run_find(connection, {"host": host, "repository": repository, "digest": digest})
        if row is None:
            return None
        return ScannedImage(row[0], row[1], tuple(row[2:]))

    def cached(self, image: ScannedImage) -> ImageFacts | None:
        """The facts of ``image`` when they were loaded under its fingerprint; else None."""
        with self._lock:
            entry = self._entries.get(image.id)
            if entry is not None and entry[0] == image.fingerprint:
                self._entries.move_to_end(image.id)
                return entry[1]
        return None

    def facts(self, connection: Connection, image: ScannedImage) -> ImageFacts:
        """The facts of ``image``: cached when loaded under the same fingerprint, else loaded
        in ``connection``'s transaction."""
        cached = self.cached(image)
        if cached is not None:
            return cached
        with Session(bind=connection) as session:
            facts = load_image_facts(session, session.get_one(models.Image, image.id))
        with self._lock:
            self.loads += 1
            self._entries[image.id] = (image.fingerprint, facts)
            self._entries.move_to_end(image.id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return facts
