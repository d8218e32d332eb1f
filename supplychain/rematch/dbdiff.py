"""Which packages two Trivy DBs disagree about: the input that narrows a rematch.

Reads Trivy's bbolt file directly (read-only, memory-mapped; format of go.etcd.io/bbolt): root
buckets are advisory sources (``"debian 12"``, ``"pip::GitHub Security Advisory pip"``), each
holding one bucket per package whose keys are vulnerability ids; ``vulnerability`` maps ids to
details (severity, CVSS …). A package is *changed* when its advisories differ, or when the details
of one of its vulnerabilities differ. Names map to our components' ``(type, name)``; OS advisories
are keyed by *source* package (``zlib`` for ``zlib1g``): an OS change becomes the key
``(type, "src:<source package>")``, matched against the components' recorded source name (and,
conservatively, against every component of that type whose source name was never recorded).
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BoltError", "DbDiff", "changed_packages", "read_index"]

_PAGE = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct("<IIIIQQQQQQ")  # magic, version, page size, flags, root, seq, freelist, …
_LEAF = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH = struct.Struct("<IIQ")  # pos, ksize, pgid
_BRANCH_PAGE, _LEAF_PAGE, _BUCKET = 0x01, 0x02, 0x01
_MAGIC = 0xED0CDAED
_META_BUCKETS = {b"vulnerability", b"data-source", b"vulnerability-id", b"trivy"}

_LANG_TYPES = {
    "pip": "pypi",
    "npm": "npm",
    "go": "golang",
    "maven": "maven",
    "rubygems": "gem",
    "cargo": "cargo",
    "composer": "composer",
    "nuget": "nuget",
    "conan": "conan",
    "pub": "pub",
    "hex": "hex",
    "swift": "swift",
    "cocoapods": "cocoapods",
    "bitnami": "bitnami",
    "k8s": "k8s",
}
_OS_TYPES = {
    "debian": "deb",
    "ubuntu": "deb",
    "alpine": "apk",
    "wolfi": "apk",
    "chainguard": "apk",
    "minimos": "apk",
    **{
        name: "rpm"
        for name in (
            "red",
            "rocky",
            "alma",
            "oracle",
            "amazon",
            "centos",
            "fedora",
            "photon",
            "cbl-mariner",
            "azure",
            "suse",
            "openSUSE",
            "SUSE",
        )
    },
}


class BoltError(Exception):
    """The file is not a bbolt DB we can read."""


Key = tuple[str, str]  # (component type, name); name "*" is every package of that type


@dataclass(frozen=True)
class DbDiff:
    """What changed between two DBs."""

    packages: frozenset[Key]
    """Components the changed advisories can touch."""
    unknown_sources: frozenset[str]
    """Changed root buckets we cannot map to a component type (then narrow nothing)."""

    @property
    def narrowable(self) -> bool:
        """True when the rematch may be limited to :attr:`packages`."""
        return not self.unknown_sources


class _Bolt:
    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        metas = []
        size = _META.unpack_from(data, _PAGE.size)[2]
        for offset in (0, size):
            meta = _META.unpack_from(data, offset + _PAGE.size)
            if meta[0] == _MAGIC:
                metas.append(meta)
        if not metas:
            raise BoltError("no valid meta page")
        self.page_size = size
        self.root = max(metas, key=lambda m: m[8])[4]

    def items(self, page: int, inline: bytes | None = None) -> Iterator[tuple[bytes, bytes, bool]]:
        """``(key, value, is_bucket)`` of the B+tree rooted at ``page`` (or an inline page)."""
        buf: bytes | mmap.mmap = inline if inline is not None else self.data
        base = 0 if inline is not None else page * self.page_size
        _, flags, count, _ = _PAGE.unpack_from(buf, base)
        for i in range(count):
            elem = base + _PAGE.size + i * _LEAF.size
            if flags & _BRANCH_PAGE:
                _, _, child = _BRANCH.unpack_from(buf, elem)
                yield from self.items(child)
            elif flags & _LEAF_PAGE:
                eflags, pos, ksize, vsize = _LEAF.unpack_from(buf, elem)
                key = bytes(buf[elem + pos : elem + pos + ksize])
                value = bytes(buf[elem + pos + ksize : elem + pos + ksize + vsize])
                yield key, value, bool(eflags & _BUCKET)
            else:
                raise BoltError(f"page {page}: unexpected flags {flags:#x}")

    def bucket(self, value: bytes) -> Iterator[tuple[bytes, bytes, bool]]:
        (root,) = struct.unpack_from("<Q", value, 0)
        return self.items(root, value[16:] if root == 0 else None)

    def digest(self, value: bytes) -> bytes:
        """A hash of a bucket's whole content (nested buckets included)."""
        sha = hashlib.sha256()
        for key, inner, is_bucket in self.bucket(value):
            sha.update(struct.pack("<I", len(key)) + key)
            sha.update(self.digest(inner) if is_bucket else hashlib.sha256(inner).digest())
        return sha.digest()


@dataclass(frozen=True)
class DbIndex:
    """Fingerprints of one DB: per (source, package) bucket and per vulnerability detail."""

    packages: dict[tuple[str, str], tuple[bytes, frozenset[str]]]
    """``(source, package)`` → (content hash, vulnerability ids)."""
    details: dict[str, bytes]
    """Vulnerability id → hash of its details."""


def read_index(path: Path) -> DbIndex:
    """Fingerprint every advisory bucket and vulnerability detail of the DB at ``path``."""
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
            bolt = _Bolt(m)
            packages: dict[tuple[str, str], tuple[bytes, frozenset[str]]] = {}
            details: dict[str, bytes] = {}
            for name, value, is_bucket in bolt.items(bolt.root):
                if not is_bucket:
                    continue
                if name == b"vulnerability":
                    for vid, detail, _ in bolt.bucket(value):
                        details[vid.decode()] = hashlib.sha256(detail).digest()
                    continue
                if name in _META_BUCKETS:
                    continue
                source = name.decode()
                for package, inner, nested in bolt.bucket(value):
                    if nested:
                        ids = frozenset(k.decode() for k, _, _ in bolt.bucket(inner))
                        packages[(source, package.decode())] = (bolt.digest(inner), ids)
            return DbIndex(packages, details)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise BoltError(f"{path}: cannot read ({exc})") from None


def _component_keys(source: str, package: str) -> set[Key] | None:
    if "::" in source:
        kind = _LANG_TYPES.get(source.split("::", 1)[0])
        if kind is None:
            return None
        name = package.lower()
        if kind == "pypi":  # PEP 503: -, _ and . are the same
            return {(kind, re.sub(r"[-_.]+", sep, name)) for sep in "-_."}
        return {(kind, name)}
    kind = _OS_TYPES.get(source.split(" ", 1)[0])
    return None if kind is None else {(kind, f"src:{package.lower()}")}


def _hash(index: DbIndex, key: tuple[str, str]) -> bytes | None:
    entry = index.packages.get(key)
    return None if entry is None else entry[0]


def changed_packages(old: Path, new: Path) -> DbDiff:
    """The components whose matches can differ between the DBs at ``old`` and ``new``."""
    before, after = read_index(old), read_index(new)
    changed = {
        k
        for k in before.packages.keys() | after.packages.keys()
        if _hash(before, k) != _hash(after, k)
    }
    vulns = {
        v
        for v in before.details.keys() | after.details.keys()
        if before.details.get(v) != after.details.get(v)
    }
    if vulns:
        for index in (before, after):
            changed.update(k for k, (_, ids) in index.packages.items() if ids & vulns)
    keys: set[Key] = set()
    unknown: set[str] = set()
    for source, package in changed:
        mapped = _component_keys(source, package)
        if mapped is None:
            unknown.add(source)
        else:
            keys.update(mapped)
    return DbDiff(frozenset(keys), frozenset(unknown))
