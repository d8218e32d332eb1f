"""The shared Trivy advisory DB: versioned, immutable snapshots and an atomic ``current`` link.

Layout under the Trivy cache dir (``SUPPLYCHAIN_TRIVY_CACHE_DIR``)::

    store/<sha256 of trivy.db>/db/{trivy.db,metadata.json}   one immutable DB version each
    current -> store/<hex>                                     the version new scans read

A scan resolves ``current`` once and passes that directory to Trivy as ``--cache-dir``, so any
number of workers read DBs while an update writes a *new* directory beside them and swaps the link
with one ``rename`` (Trivy's bbolt file allows one writer; we never write a DB that is being read).
A new DB is installed only after it passed checks: ``metadata.json`` of schema 2 with an
``UpdatedAt``, a bbolt file, and a real ``trivy sbom`` run against it. A DB that fails them is
refused and ``current`` stays where it was.

Sources: Trivy's own download (``trivy image --download-db-only``, optionally from the
organisation's OCI mirror with ``--db-repository``) or an archive (``db.tar.gz`` as Trivy's OCI
artifact holds it, for air-gapped sites).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.interface import ScanError
from supplychain.stages.scanner import TrivyRunner

__all__ = ["DbInfo", "VulnDbError", "VulnDbStore", "record_db"]

SCHEMA_VERSION = 2
TRIVY_DEFAULT_REPOSITORIES = "mirror.gcr.io/aquasec/trivy-db:2, ghcr.io/aquasecurity/trivy-db:2"
"""Where ``trivy --download-db-only`` looks without ``--db-repository`` (Trivy 0.76)."""
_BOLT_MAGIC = 0xED0CDAED
_MAX_DB_BYTES = 8 * 1024**3
_MEMBERS = ("trivy.db", "metadata.json")
_EMPTY_SBOM = json.dumps(
    {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}
).encode()


class VulnDbError(Exception):
    """A DB could not be installed, read or downloaded; the current DB is left as it was."""


@dataclass(frozen=True)
class DbInfo:
    """One installed DB version."""

    digest: str
    """``sha256:`` of ``trivy.db``: the DB's identity, recorded with every scan."""
    updated_at: datetime
    """``UpdatedAt`` from ``metadata.json``."""
    schema_version: int
    """Trivy DB schema version (2)."""
    path: Path
    """The snapshot directory (Trivy's ``--cache-dir``)."""

    def age_hours(self, now: datetime | None = None) -> float:
        """Hours since ``updated_at``."""
        return ((now or datetime.now(UTC)) - self.updated_at).total_seconds() / 3600


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def _read_metadata(path: Path) -> tuple[datetime, int]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        version = int(meta["Version"])
        updated = datetime.fromisoformat(str(meta["UpdatedAt"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VulnDbError(f"{path}: not a Trivy DB metadata.json ({exc})") from None
    if version != SCHEMA_VERSION:
        raise VulnDbError(f"{path}: DB schema {version}, this service reads {SCHEMA_VERSION}")
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return updated, version


def _check_bolt(path: Path) -> None:
    """Cheap structural check: both meta pages carry bbolt's magic number."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(32)
    except OSError as exc:
        raise VulnDbError(f"{path}: cannot read ({exc.strerror})") from None
    if size > _MAX_DB_BYTES:
        raise VulnDbError(f"{path}: larger than {_MAX_DB_BYTES} bytes")
    if len(head) < 20 or struct.unpack_from("<I", head, 16)[0] != _BOLT_MAGIC:
        raise VulnDbError(f"{path}: not a bbolt database")


class VulnDbStore:
    """Versioned DB snapshots under ``root`` with an atomically swapped ``current`` link."""

    def __init__(self, root: Path, runner: TrivyRunner | None = None) -> None:
        self.root = root
        self.runner = runner
        self.store = root / "store"

    def current(self) -> DbInfo | None:
        """The DB new scans read, or None when none is installed."""
        link = self.root / "current"
        snapshot = link.resolve() if link.is_symlink() else self.root
        db_file = snapshot / "db" / "trivy.db"
        if not db_file.is_file():
            return None
        updated, version = _read_metadata(snapshot / "db" / "metadata.json")
        return DbInfo(_digest(db_file), updated, version, snapshot)

    def versions(self) -> list[Path]:
        """Installed snapshot directories, oldest first."""
        if not self.store.is_dir():
            return []
        found = [p for p in self.store.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=lambda p: p.stat().st_mtime)

    def install(self, db_dir: Path) -> DbInfo:
        """Check the DB in ``db_dir`` (trivy.db + metadata.json), copy it in, make it current."""
        updated, version = _read_metadata(db_dir / "metadata.json")
        _check_bolt(db_dir / "trivy.db")
        digest = _digest(db_dir / "trivy.db")
        self.store.mkdir(parents=True, exist_ok=True)
        final = self.store / digest.removeprefix("sha256:")
        if not final.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.store))
            try:
                (staging / "db").mkdir()
                for name in _MEMBERS:
                    shutil.copyfile(db_dir / name, staging / "db" / name)
                if _digest(staging / "db" / "trivy.db") != digest:
                    raise VulnDbError("trivy.db changed while it was being installed")
                self._smoke_test(staging)
                os.replace(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        self._point_current(final)
        return DbInfo(digest, updated, version, final)

    def _smoke_test(self, snapshot: Path) -> None:
        """Match an empty SBOM with the real Trivy against the new DB: it must open it."""
        if self.runner is None:
            return
        with tempfile.NamedTemporaryFile(suffix=".cdx.json") as handle:
            handle.write(_EMPTY_SBOM)
            handle.flush()
            flags = self.runner.common_flags(snapshot)
            try:
                self.runner.run(["sbom", "--format", "json", *flags, handle.name])
            except ScanError as exc:
                raise VulnDbError(f"trivy cannot use the new DB: {exc}") from None

    def _point_current(self, snapshot: Path) -> None:
        link = self.root / "current"
        tmp = self.root / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(snapshot.relative_to(self.root))
        os.replace(tmp, link)  # rename(2): readers see the old or the new link, never none

    def import_archive(self, archive: Path) -> DbInfo:
        """Install the DB in a ``db.tar.gz`` (Trivy's OCI artifact layer) or a plain tar."""
        with tempfile.TemporaryDirectory(dir=self.root if self.root.is_dir() else None) as tmp:
            out = Path(tmp)
            try:
                with tarfile.open(archive, "r:*") as tar:
                    seen = set()
                    for member in tar:
                        name = member.name.removeprefix("./")
                        if name not in _MEMBERS:
                            continue
                        if not member.isfile() or member.size > _MAX_DB_BYTES:
                            raise VulnDbError(f"{archive}: {name} is not a regular file")
                        source = tar.extractfile(member)
                        if source is None:
                            raise VulnDbError(f"{archive}: cannot read {name}")
                        with source, (out / name).open("wb") as target:
                            shutil.copyfileobj(source, target)
                        seen.add(name)
            except (OSError, tarfile.TarError) as exc:
                raise VulnDbError(f"{archive}: not a readable DB archive ({exc})") from None
            missing = set(_MEMBERS) - seen
            if missing:
                raise VulnDbError(f"{archive}: missing {', '.join(sorted(missing))}")
            return self.install(out)

    def update(self, repository: str | None = None) -> DbInfo:
        """Download with Trivy (from ``repository``, e.g. an internal OCI mirror) and install."""
        if self.runner is None:
            raise VulnDbError("no trivy runner to download with")
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=self.root) as tmp:
            args = ["image", "--download-db-only", "--cache-dir", tmp, "--quiet"]
            args += ["--skip-version-check", "--disable-telemetry"]
            if repository:
                args += ["--db-repository", repository]
            try:
                self.runner.run(args)
            except ScanError as exc:
                tried = repository or f"Trivy's default repositories ({TRIVY_DEFAULT_REPOSITORIES})"
                raise VulnDbError(
                    f"DB download failed from {tried}: {exc}\n"
                    "  check that this machine reaches it (HTTPS_PROXY for a proxy), or name your "
                    "organisation's mirror with --repository / SUPPLYCHAIN_DB_REPOSITORY;\n"
                    "  air-gapped: `supplychain vulndb import db.tar.gz` and "
                    "SUPPLYCHAIN_TRIVY_OFFLINE=true"
                ) from None
            return self.install(Path(tmp) / "db")

    def prune(self, keep: int = 3) -> list[Path]:
        """Remove all but the ``keep`` newest snapshots (never the current one)."""
        current = self.current()
        removed = []
        for path in self.versions()[:-keep] if keep > 0 else self.versions():
            if current is not None and path == current.path:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        return removed


def record_db(session: Session, info: DbInfo, *, source: str, origin: str | None) -> bool:
    """Note ``info`` in ``vuln_databases``; True when this DB version is new to us."""
    known = session.scalars(
        select(models.VulnDatabase).where(models.VulnDatabase.digest == info.digest)
    ).first()
    if known is not None:
        return False
    session.add(
        models.VulnDatabase(
            digest=info.digest,
            updated_at=info.updated_at,
            schema_version=info.schema_version,
            source=source,
            origin=origin,
        )
    )
    return True
