"""Build small, real Trivy vulnerability DBs (bbolt files) for offline tests.

Layout follows aquasecurity/trivy-db (schema version 2):

* one root bucket per advisory source (``"debian 12"``, ``"pip::GitHub Security Advisory pip"``),
  a nested bucket per package (Debian: the *source* package), key = vulnerability id,
  value = advisory JSON (``FixedVersion`` for OS packages, ``VulnerableVersions`` /
  ``PatchedVersions`` for language packages);
* ``vulnerability``: id -> details (``Title``, ``Severity``, ``VendorSeverity`` ...);
* ``data-source``: root bucket name -> ``{ID, Name, URL}``.

Trivy looks language advisories up by prefix: every root bucket starting with ``"pip::"``
(``"npm::"``, ...) is searched.  The file is written with the pure-python ``boltdb`` package;
afterwards we rewrite its freelist page (that package writes free page ids at the wrong
offsets) and set the FNV-1a checksum of both meta pages, which Go's bbolt verifies but
``boltdb`` leaves zero.
"""

from __future__ import annotations

import json
import struct
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from boltdb import BoltDB

SCHEMA_VERSION = 2
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")

# Root-bucket prefix -> (data source ID, human readable name, URL) as trivy-db records them.
_KNOWN_SOURCES: dict[str, tuple[str, str, str]] = {
    "debian": (
        "debian",
        "Debian Security Tracker",
        "https://salsa.debian.org/security-tracker-team/security-tracker",
    ),
    "alpine": ("alpine", "Alpine Secdb", "https://secdb.alpinelinux.org/"),
    "ubuntu": ("ubuntu", "Ubuntu CVE Tracker", "https://git.launchpad.net/ubuntu-cve-tracker"),
}
_GHSA_URL = "https://github.com/advisories?query=type%3Areviewed+ecosystem%3A"

# bbolt on-disk format (go.etcd.io/bbolt internal/common): little endian, fixed widths.
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct("<IIIIQQQQQQ")  # magic, version, pageSize, flags, root{root, seq},
#                                       freelist, pgid (high water mark), txid, checksum
_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, pgid
_BRANCH, _LEAF, _META_FLAG, _FREELIST = 0x01, 0x02, 0x04, 0x10
_BUCKET_LEAF = 0x01
_MAGIC = 0xED0CDAED
_CHECKSUM_OFFSET = 56  # unsafe.Offsetof(Meta{}.checksum)


@dataclass(frozen=True)
class Advisory:
    """One vulnerability of one package in one Trivy advisory source (root bucket)."""

    vuln_id: str
    source: str
    package: str
    severity: str
    fixed_version: str = ""
    vulnerable_versions: tuple[str, ...] = ()
    patched_versions: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    vendor_ids: tuple[str, ...] = ()
    """Other ids of the advisory (trivy-db's ``VendorIDs``, e.g. a GHSA id): Trivy reports them."""
    cvss_v3_score: float | None = None
    """NVD's CVSS v3 base score (trivy-db's ``CVSS.nvd.V3Score``), when the advisory has one."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def severity_int(self) -> int:
        return SEVERITIES.index(self.severity)

    def advisory_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.fixed_version:
            body["FixedVersion"] = self.fixed_version
        if self.vulnerable_versions:
            body["VulnerableVersions"] = list(self.vulnerable_versions)
        if self.patched_versions:
            body["PatchedVersions"] = list(self.patched_versions)
        if self.vendor_ids:
            body["VendorIDs"] = list(self.vendor_ids)
        return body


def data_source(bucket: str) -> dict[str, str]:
    """The ``data-source`` value trivy-db stores for a root bucket name."""
    if "::" in bucket:  # e.g. "pip::GitHub Security Advisory pip"
        ecosystem, name = bucket.split("::", 1)
        if name.startswith("GitHub Security Advisory"):
            return {"ID": "ghsa", "Name": name, "URL": _GHSA_URL + ecosystem}
        return {"ID": ecosystem, "Name": name, "URL": ""}
    family = bucket.split(" ", 1)[0]
    src_id, name, url = _KNOWN_SOURCES.get(family, (family, bucket, ""))
    return {"ID": src_id, "Name": name, "URL": url}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _collect(advisories: Sequence[Advisory]) -> dict[bytes, dict[bytes, Any]]:
    """Nested ``{root bucket: {key or nested bucket: value}}`` tree, values as JSON bytes."""
    tree: dict[bytes, dict[bytes, Any]] = {b"vulnerability": {}, b"data-source": {}}
    details: dict[str, dict[str, Any]] = {}
    for adv in advisories:
        pkgs = tree.setdefault(adv.source.encode(), {})
        pkgs.setdefault(adv.package.encode(), {})[adv.vuln_id.encode()] = json.dumps(
            adv.advisory_json()
        ).encode()
        tree[b"data-source"][adv.source.encode()] = json.dumps(data_source(adv.source)).encode()
        detail = details.setdefault(
            adv.vuln_id,
            {
                "Title": adv.title or f"{adv.package}: {adv.vuln_id}",
                "Description": adv.description or f"Synthetic test advisory {adv.vuln_id}.",
                "Severity": adv.severity,
                "VendorSeverity": {},
                "References": [f"https://example.invalid/{adv.vuln_id}"],
                "PublishedDate": "2099-01-01T00:00:00Z",
                "LastModifiedDate": "2099-01-02T00:00:00Z",
            },
        )
        detail["VendorSeverity"][data_source(adv.source)["ID"]] = adv.severity_int
        if adv.cvss_v3_score is not None:
            detail["CVSS"] = {"nvd": {"V3Score": adv.cvss_v3_score}}
    for vuln_id, detail in details.items():
        tree[b"vulnerability"][vuln_id.encode()] = json.dumps(detail).encode()
    return tree


class _BoltDB(BoltDB):  # type: ignore[misc]
    """``boltdb.BoltDB`` whose ``close`` is idempotent (its ``__del__`` closes again)."""

    _closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            super().close()


def _fill(bucket: Any, content: dict[bytes, Any]) -> None:
    for key in sorted(content):
        value = content[key]
        if isinstance(value, dict):
            _fill(bucket.create_bucket(key), value)
        else:
            bucket.put(key, value)


def _reachable(buf: bytes | bytearray, page_size: int, root: int) -> set[int]:
    """Page ids reachable from the root bucket page (including overflow pages)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        pgid = stack.pop()
        base = pgid * page_size
        _, flags, count, overflow = _PAGE_HEADER.unpack_from(buf, base)
        seen.update(range(pgid, pgid + overflow + 1))
        for i in range(count):
            elem = base + _PAGE_HEADER.size + i * _LEAF_ELEM.size
            if flags & _BRANCH:
                stack.append(_BRANCH_ELEM.unpack_from(buf, elem)[2])
            elif flags & _LEAF:
                eflags, pos, ksize, _ = _LEAF_ELEM.unpack_from(buf, elem)
                if eflags & _BUCKET_LEAF:
                    (child,) = struct.unpack_from("<Q", buf, elem + pos + ksize)
                    if child:  # 0 = inline bucket; inline buckets never hold sub-buckets
                        stack.append(child)
            else:
                raise ValueError(f"page {pgid}: unexpected flags {flags:#x}")
    return seen


def _meta_checksum(meta: bytes | bytearray) -> int:
    """FNV-1a 64 over the meta struct up to (excluding) the checksum field."""
    h = 0xCBF29CE484222325
    for byte in meta[:_CHECKSUM_OFFSET]:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def finalize_bbolt(path: Path, *, checksum: bool = True) -> None:
    """Make a ``boltdb``-written file acceptable to Go's bbolt (freelist + meta checksums)."""
    buf = bytearray(path.read_bytes())
    page_size = _META.unpack_from(buf, _PAGE_HEADER.size)[2]
    metas = [list(_META.unpack_from(buf, i * page_size + _PAGE_HEADER.size)) for i in (0, 1)]
    current = max(metas, key=lambda m: m[8])
    _, _, _, _, root, _, freelist, hwm, _, _ = current
    if any(m[0] != _MAGIC for m in metas) or hwm * page_size > len(buf):
        raise ValueError(f"{path}: not a bbolt file written by boltdb")
    used = _reachable(buf, page_size, root) | {0, 1, freelist}
    free = [p for p in range(2, hwm) if p not in used]
    if _PAGE_HEADER.size + 8 * len(free) > page_size:
        raise ValueError(f"{path}: too many free pages ({len(free)}) for one freelist page")
    start = freelist * page_size
    buf[start : start + page_size] = bytes(page_size)
    _PAGE_HEADER.pack_into(buf, start, freelist, _FREELIST, len(free), 0)
    for i, pgid in enumerate(free):
        struct.pack_into("<Q", buf, start + _PAGE_HEADER.size + 8 * i, pgid)
    for i in (0, 1):
        off = i * page_size + _PAGE_HEADER.size
        value = _meta_checksum(buf[off : off + _META.size]) if checksum else 0
        struct.pack_into("<Q", buf, off + _CHECKSUM_OFFSET, value)
    path.write_bytes(bytes(buf))


def write_metadata(db_dir: Path, updated_at: datetime) -> Path:
    """Write trivy's ``metadata.json`` next to ``trivy.db``."""
    meta = {
        "Version": SCHEMA_VERSION,
        "NextUpdate": _rfc3339(updated_at + timedelta(hours=24)),
        "UpdatedAt": _rfc3339(updated_at),
        "DownloadedAt": _rfc3339(updated_at),
    }
    path = db_dir / "metadata.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def build_trivy_db(
    cache_dir: Path,
    advisories: Sequence[Advisory],
    updated_at: datetime | None = None,
    *,
    checksum: bool = True,
) -> Path:
    """Write ``<cache_dir>/db/trivy.db`` and ``<cache_dir>/db/metadata.json``.

    Returns the ``trivy.db`` path.  Use the cache dir with ``trivy --cache-dir cache_dir
    --skip-db-update --skip-java-db-update --offline-scan``.  ``checksum=False`` leaves the
    meta-page checksums zero (what ``boltdb`` alone produces; Go's bbolt rejects it).
    """
    db_dir = cache_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    path = db_dir / "trivy.db"
    path.unlink(missing_ok=True)
    tree = _collect(advisories)
    bolt = _BoltDB(str(path))
    try:
        with bolt.update() as tx:  # a single write transaction
            for name in sorted(tree):
                _fill(tx.create_bucket(name), tree[name])
    finally:
        bolt.close()
    finalize_bbolt(path, checksum=checksum)
    write_metadata(db_dir, updated_at or datetime.now(UTC))
    return path


def build_trivy_db_archive(
    dest: Path, advisories: Sequence[Advisory], updated_at: datetime | None = None
) -> Path:
    """Write a trivy DB artifact (``db.tar.gz`` with ``trivy.db`` + ``metadata.json``) to
    ``dest`` (a file path, or a directory to put ``db.tar.gz`` in); returns its path."""
    archive = dest / "db.tar.gz" if dest.is_dir() else dest
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = build_trivy_db(Path(tmp), advisories, updated_at)
        with tarfile.open(archive, "w:gz") as tar:
            for member in (db_path, db_path.parent / "metadata.json"):
                tar.add(member, arcname=member.name)
    return archive
