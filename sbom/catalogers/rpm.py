"""RPM packages from the rpm database in all three formats rpm has used: SQLite
(``rpmdb.sqlite``, rpm >= 4.16: Fedora, RHEL/UBI 9, Rocky, CBL-Mariner), Berkeley DB
(``Packages``: CentOS 7, RHEL/UBI 8, Amazon Linux 2) and ndb (``Packages.db``: SLES 15), under
``var/lib/rpm/`` or ``usr/lib/sysimage/rpm/`` (Trivy's paths). See :mod:`._rpmdb` for the formats.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Collection, Mapping, Sequence

from sbom.catalogers._common import distro_qualifier, purl_namespace
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, extension, register, warn
from sbom.licenses import spdx

log = logging.getLogger(__name__)

_DIRS = ("var/lib/rpm/", "usr/lib/sysimage/rpm/")
_DATABASES = frozenset(d + f for d in _DIRS for f in ("Packages", "Packages.db", "rpmdb.sqlite"))
_NAME, _VERSION, _RELEASE, _EPOCH, _LICENSE, _ARCH = 1000, 1001, 1002, 1003, 1014, 1022
_SOURCERPM, _DIRINDEXES, _BASENAMES, _DIRNAMES, _REQUIRENAME = 1044, 1116, 1117, 1118, 1049
_MAX_ENTRIES = 100_000
_WANTED = frozenset({_NAME, _VERSION, _RELEASE, _EPOCH, _LICENSE, _ARCH, _SOURCERPM})
_WANTED |= {_DIRINDEXES, _BASENAMES, _DIRNAMES, _REQUIRENAME}


def parse_header(
    blob: bytes, wanted: Collection[int] | None = None
) -> dict[int, list[str] | list[int]]:
    """Tags of an RPM header blob (strings, string arrays and int32 arrays); only the tags in
    ``wanted`` when given (file digests, user names, changelogs… are most of a header)."""
    if len(blob) < 8:
        raise ValueError("short header")
    count, size = struct.unpack_from(">II", blob)
    start = 8 + count * 16
    if count > _MAX_ENTRIES or start + size > len(blob):
        raise ValueError("header sizes out of range")
    tags: dict[int, list[str] | list[int]] = {}
    for index in range(count):
        tag, kind, offset, number = struct.unpack_from(">iiii", blob, 8 + index * 16)
        if wanted is not None and tag not in wanted:
            continue
        if not 0 <= offset < size or not 0 < number <= _MAX_ENTRIES:
            continue
        offset += start
        if kind == 4:  # INT32
            if offset + 4 * number <= start + size:
                tags[tag] = list(struct.unpack_from(f">{number}i", blob, offset))
        elif kind in (6, 8, 9):  # STRING, STRING_ARRAY, I18NSTRING
            strings: list[str] = []
            pos = offset
            for _ in range(number if kind != 6 else 1):
                end = blob.find(b"\0", pos, start + size)
                if end < 0:
                    break
                strings.append(blob[pos:end].decode("utf-8", "replace"))
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
    version = 3
    os_packages = True
    max_size = 512 * 1024 * 1024

    extensions = frozenset(extension(p) for p in _DATABASES)

    def wants(self, path: str) -> bool:
        return path in _DATABASES

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        from sbom.catalogers._rpmdb import RpmDbError, header_blobs  # rpm images only

        out: dict[str, list[Package]] = {}
        for entry in files:
            out[entry.path] = []
            try:  # read in place from the reader's spooled file, page by page
                with entry.open() as handle:
                    for blob in header_blobs(handle):
                        package = self._package(entry, blob, os_info)
                        if package is not None:
                            out[entry.path].append(package)
            except RpmDbError as exc:  # what was read before the damage is kept
                warn(entry.path, f"not a readable rpm database: {exc}")
        return out

    def _package(self, entry: FileEntry, blob: bytes, os_info: OSInfo | None) -> Package | None:
        try:
            tags = parse_header(blob, _WANTED)
        except (ValueError, struct.error) as exc:
            warn(entry.path, f"skipped a malformed package header: {exc}")
            return None
        name, version = _first(tags, _NAME), _first(tags, _VERSION)
        if not name or not version or name == "gpg-pubkey":
            return None
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
        return Package(
            type="rpm",
            name=name,
            version=f"{epoch}:{full}" if epoch else full,
            namespace=purl_namespace(os_info, None),
            qualifiers=((("arch", arch),) if arch else ()) + distro_qualifier(os_info),
            licenses=(spdx(_first(tags, _LICENSE)),) if _first(tags, _LICENSE) else (),
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
