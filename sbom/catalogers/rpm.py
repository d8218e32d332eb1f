"""RPM packages from the SQLite rpmdb (``var/lib/rpm/rpmdb.sqlite``, ``usr/lib/sysimage/rpm``).

The Berkeley DB (``Packages``) and ndb (``Packages.db``) formats of older distributions are not
read yet: such images get a warning and no RPM packages.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sbom.catalogers._common import distro_qualifier
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

log = logging.getLogger(__name__)

_DIRS = ("var/lib/rpm/", "usr/lib/sysimage/rpm/")
_NAME, _VERSION, _RELEASE, _EPOCH, _LICENSE, _ARCH = 1000, 1001, 1002, 1003, 1014, 1022
_SOURCERPM, _DIRINDEXES, _BASENAMES, _DIRNAMES, _REQUIRENAME = 1044, 1116, 1117, 1118, 1049
_MAX_ENTRIES = 100_000


def parse_header(blob: bytes) -> dict[int, list[str] | list[int]]:
    """Tags of an RPM header blob (strings, string arrays and int32 arrays)."""
    if len(blob) < 8:
        raise ValueError("short header")
    count, size = struct.unpack(">II", blob[:8])
    if count > _MAX_ENTRIES or 8 + count * 16 + size > len(blob):
        raise ValueError("header sizes out of range")
    store = blob[8 + count * 16 : 8 + count * 16 + size]
    tags: dict[int, list[str] | list[int]] = {}
    for index in range(count):
        tag, kind, offset, number = struct.unpack_from(">iiii", blob, 8 + index * 16)
        if not 0 <= offset < len(store) or not 0 < number <= _MAX_ENTRIES:
            continue
        if kind == 4:  # INT32
            end = offset + 4 * number
            if end <= len(store):
                tags[tag] = list(struct.unpack_from(f">{number}i", store, offset))
        elif kind in (6, 8, 9):  # STRING, STRING_ARRAY, I18NSTRING
            strings: list[str] = []
            pos = offset
            for _ in range(number if kind != 6 else 1):
                end = store.find(b"\0", pos)
                if end < 0:
                    break
                strings.append(store[pos:end].decode("utf-8", "replace"))
                pos = end + 1
            tags[tag] = strings
    return tags


def _first(tags: Mapping[int, list[str] | list[int]], tag: int) -> str:
    values = tags.get(tag) or []
    return str(values[0]) if values else ""


@register
class RpmCataloger(LayerCataloger):
    """Installed RPM packages with epoch, source rpm, license and files."""

    name = "rpm"
    version = 1
    os_packages = True
    max_size = 512 * 1024 * 1024

    def wants(self, path: str) -> bool:
        return path.startswith(_DIRS) and path.endswith("/rpmdb.sqlite")

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        for entry in files:
            try:
                out[entry.path] = self._sqlite(entry, os_info)
            except sqlite3.DatabaseError as exc:
                log.warning("%s: not a readable rpmdb: %s", entry.path, exc)
                out[entry.path] = []
        return out

    def _sqlite(self, entry: FileEntry, os_info: OSInfo | None) -> list[Package]:
        if isinstance(entry.source, Path):  # the reader's own copy: read in place, never written
            conn = sqlite3.connect(f"{entry.source.as_uri()}?mode=ro&immutable=1", uri=True)
        else:
            conn = sqlite3.connect(":memory:")
        try:
            if isinstance(entry.source, bytes):
                data = bytearray(entry.source)
                if data[:16] == b"SQLite format 3\0" and data[18:20] == b"\2\2":
                    data[18:20] = b"\1\1"  # WAL mode (as rpm leaves it): not in memory
                conn.deserialize(bytes(data))
            return self._packages(entry, conn.execute("SELECT blob FROM Packages"), os_info)
        finally:
            conn.close()

    def _packages(
        self, entry: FileEntry, rows: Iterable[tuple[bytes]], os_info: OSInfo | None
    ) -> list[Package]:
        packages: list[Package] = []
        for (blob,) in rows:
            try:
                tags = parse_header(bytes(blob))
            except (ValueError, struct.error) as exc:
                log.warning("%s: skipped a malformed header: %s", entry.path, exc)
                continue
            name, version = _first(tags, _NAME), _first(tags, _VERSION)
            if not name or not version or name == "gpg-pubkey":
                continue
            epoch = _first(tags, _EPOCH)
            full = f"{version}-{_first(tags, _RELEASE)}"
            dirs = [str(d) for d in tags.get(_DIRNAMES) or []]
            bases = [str(b) for b in tags.get(_BASENAMES) or []]
            indexes = [i for i in tags.get(_DIRINDEXES) or [] if isinstance(i, int)]
            owned = tuple(
                (dirs[i] + b).lstrip("/")
                for i, b in zip(indexes, bases, strict=False)
                if 0 <= i < len(dirs)
            )
            source_parts = _first(tags, _SOURCERPM).removesuffix(".src.rpm").rsplit("-", 2)
            arch = _first(tags, _ARCH)
            packages.append(
                Package(
                    type="rpm",
                    name=name,
                    version=f"{epoch}:{full}" if epoch else full,
                    namespace=os_info.family if os_info else None,
                    qualifiers=((("arch", arch),) if arch else ()) + distro_qualifier(os_info),
                    licenses=(_first(tags, _LICENSE),) if _first(tags, _LICENSE) else (),
                    source_name=source_parts[0] if len(source_parts) == 3 else None,
                    source_version="-".join(source_parts[1:]) if len(source_parts) == 3 else None,
                    depends=tuple(
                        str(r)
                        for r in tags.get(_REQUIRENAME) or []
                        if not str(r).startswith("/") and "(" not in str(r)
                    ),
                    owned_files=owned,
                    path=entry.path,
                )
            )
        return packages
