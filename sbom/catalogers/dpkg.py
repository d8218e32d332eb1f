"""Debian packages: ``var/lib/dpkg/status`` and ``status.d/`` (distroless), the file lists in
``var/lib/dpkg/info/*.list`` and the licenses of ``usr/share/doc/*/copyright``.

File lists and copyright files may sit in other layers than the status file, so they are
returned as *records* (packages with an empty version) that the merge joins by name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from sbom.catalogers._common import distro_qualifier, normalise_license, stanzas
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

log = logging.getLogger(__name__)

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
INFO = "var/lib/dpkg/info/"
_COPYRIGHT = re.compile(r"usr/share/doc/([^/]+)/copyright")
_DEP_NAME = re.compile(r"\s*([a-zA-Z0-9][a-zA-Z0-9.+-]*)")


def _depends(fields: Mapping[str, str]) -> tuple[str, ...]:
    names: list[str] = []
    for key in ("Pre-Depends", "Depends"):
        for clause in fields.get(key, "").split(","):
            for alternative in clause.split("|")[:1]:  # the first alternative, as Trivy
                match = _DEP_NAME.match(alternative)
                if match and match.group(1) not in names:
                    names.append(match.group(1))
    return tuple(names)


def _licenses(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for line in text.splitlines():
        if line.startswith("License:"):
            name = normalise_license(line[len("License:") :].strip())
            if name and name not in found:
                found.append(name)
    return tuple(found)


@register
class DpkgCataloger(LayerCataloger):
    """Installed Debian packages with source package, dependencies, files and licenses."""

    name = "dpkg"
    version = 1
    os_packages = True

    def wants(self, path: str) -> bool:
        if path == STATUS or (path.startswith(STATUS_D) and not path.endswith(".md5sums")):
            return True
        if path.startswith(INFO) and path.endswith(".list"):
            return True
        return path.startswith("usr/share/doc/") and _COPYRIGHT.fullmatch(path) is not None

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        for entry in files:
            text = entry.data.decode("utf-8", "replace")
            if entry.path.startswith(INFO):
                name = entry.path[len(INFO) : -len(".list")].split(":", 1)[0]
                owned = tuple(
                    line.strip().lstrip("/") for line in text.splitlines() if line.strip("/ ")
                )
                out[entry.path] = [Package("deb", name, "", owned_files=owned, path=entry.path)]
            elif match := _COPYRIGHT.fullmatch(entry.path):
                licenses = _licenses(text)
                out[entry.path] = [
                    Package("deb", match.group(1), "", licenses=licenses, path=entry.path)
                ]
            else:
                out[entry.path] = self._status(entry, text, os_info)
        return out

    def _status(self, entry: FileEntry, text: str, os_info: OSInfo | None) -> list[Package]:
        packages: list[Package] = []
        namespace = os_info.family if os_info else "debian"
        for fields in stanzas(text):
            name, version = fields.get("Package"), fields.get("Version")
            if not name or not version:
                log.warning("%s: skipped a stanza without Package/Version", entry.path)
                continue
            if "installed" not in fields.get("Status", "install ok installed").split():
                continue
            source, _, source_version = fields.get("Source", name).partition(" ")
            qualifiers = (
                (("arch", fields.get("Architecture", "")),) if "Architecture" in fields else ()
            )
            packages.append(
                Package(
                    type="deb",
                    name=name,
                    version=version,
                    namespace=namespace,
                    qualifiers=qualifiers + distro_qualifier(os_info),
                    source_name=source,
                    source_version=source_version.strip("()") or version,
                    depends=_depends(fields),
                    path=entry.path,
                    properties=(("maintainer", fields["Maintainer"]),)
                    if "Maintainer" in fields
                    else (),
                )
            )
        return packages
