"""Alpine packages: ``lib/apk/db/installed``, or ``usr/lib/apk/db/installed`` where apk-tools
3 (Alpine >= 3.22 with the usr-merge, Chimera, Wolfi's newer images) keeps it; Trivy reads both.

A package's ``L:`` field is an SPDX expression in current Alpine (``(Apache-2.0 OR MIT) AND
MPL-2.0``) and a whitespace-separated list in old databases (``MIT BSD GPL2+``): the first is
kept whole, the second is split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from sbom.catalogers._common import distro_qualifier, purl_namespace
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, extension, register, warn
from sbom.licenses import is_spdx, spdx, spdx_all

log = logging.getLogger(__name__)

INSTALLED = ("lib/apk/db/installed", "usr/lib/apk/db/installed")
_OPERATOR = re.compile(r"[()]|\b(?:AND|OR|WITH)\b")


def _licenses(field: str) -> tuple[str, ...]:
    if not field.strip():
        return ()
    whole = spdx(field)
    if is_spdx(whole) or _OPERATOR.search(field) or " " not in whole:
        return (whole,)  # an SPDX expression (or one apk cannot parse either), or one name
    return spdx_all(field.split())  # an old space-separated list


def _records(text: str) -> list[list[tuple[str, str]]]:
    records: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            if records[-1]:
                records.append([])
            continue
        key, colon, value = line.partition(":")
        if colon and len(key) == 1:
            records[-1].append((key, value))
    return [r for r in records if r]


@register
class ApkCataloger(LayerCataloger):
    """Installed Alpine packages with origin, license, dependencies and files."""

    name = "apk"
    version = 2
    os_packages = True

    extensions = frozenset(extension(p) for p in INSTALLED)

    def wants(self, path: str) -> bool:
        return path in INSTALLED

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        for entry in files:
            out[entry.path] = self._parse(entry, os_info)
        return out

    def _parse(self, entry: FileEntry, os_info: OSInfo | None) -> list[Package]:
        packages: list[Package] = []
        text = entry.data.decode("utf-8", "replace")
        records = _records(text)
        if not records and text.strip():
            warn(entry.path, "skipped: no package record in it")
        for record in records:
            fields = dict(record)
            name, version = fields.get("P"), fields.get("V")
            if not name or not version:
                warn(entry.path, "skipped a package record without P: and V:")
                continue
            owned: list[str] = []
            directory = ""
            for key, value in record:
                if key == "F":
                    directory = value
                elif key == "R":
                    owned.append(f"{directory}/{value}" if directory else value)
            depends = tuple(
                word for word in fields.get("D", "").split() if not word.startswith(("so:", "!"))
            )
            qualifiers = (("arch", fields["A"]),) if "A" in fields else ()
            packages.append(
                Package(
                    type="apk",
                    name=name,
                    version=version,
                    namespace=purl_namespace(os_info, "alpine"),
                    # Trivy writes apk's distro qualifier as the bare version (distro=3.19.1)
                    qualifiers=qualifiers + (distro_qualifier(os_info, bare=True)),
                    licenses=_licenses(fields.get("L", "")),
                    source_name=fields.get("o"),
                    source_version=version,
                    depends=depends,
                    owned_files=tuple(owned),
                    path=entry.path,
                )
            )
        return packages
