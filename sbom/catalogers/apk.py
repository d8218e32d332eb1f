"""Alpine packages: ``lib/apk/db/installed``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sbom.catalogers._common import distro_qualifier
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

log = logging.getLogger(__name__)

INSTALLED = "lib/apk/db/installed"


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
    version = 1
    os_packages = True

    def wants(self, path: str) -> bool:
        return path == INSTALLED

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        for entry in files:
            out[entry.path] = self._parse(entry, os_info)
        return out

    def _parse(self, entry: FileEntry, os_info: OSInfo | None) -> list[Package]:
        packages: list[Package] = []
        for record in _records(entry.data.decode("utf-8", "replace")):
            fields = dict(record)
            name, version = fields.get("P"), fields.get("V")
            if not name or not version:
                log.warning("%s: skipped a record without P:/V:", entry.path)
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
                    namespace=os_info.family if os_info else "alpine",
                    qualifiers=qualifiers + distro_qualifier(os_info),
                    licenses=tuple(fields["L"].split()) if fields.get("L") else (),
                    source_name=fields.get("o"),
                    source_version=version,
                    depends=depends,
                    owned_files=tuple(owned),
                    path=entry.path,
                )
            )
        return packages
