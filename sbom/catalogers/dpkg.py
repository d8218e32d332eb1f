"""Debian packages: ``var/lib/dpkg/status`` and ``status.d/`` (distroless), the file lists in
``var/lib/dpkg/info/*.list`` and the licenses of ``usr/share/doc/*/copyright``.

File lists and copyright files may sit in other layers than the status file, so they are
returned as *records* (packages with an empty version) that the merge joins by name.

Status files are parsed with python-debian's deb822 parser, and versions checked with its
Debian version rules (a stanza with an invalid version is skipped with a warning, as Trivy
does). Copyright files in the machine-readable format (DEP-5) are read with
:mod:`debian.copyright`: each ``Files:`` paragraph's licence synopsis becomes one SPDX
expression (DEP-5's commas bind looser than ``and``/``or``). Other copyright files give the
``License:`` lines they have and their ``/usr/share/common-licenses/…`` references.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from debian import copyright as dep5
from debian.deb822 import Packages
from debian.debian_support import Version

from sbom.catalogers._common import distro_qualifier, purl_namespace
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn
from sbom.licenses import dep5_expression, spdx

log = logging.getLogger(__name__)
# python-debian warns about each http:// Format URL it accepts: that is not our user's problem
logging.getLogger(dep5.__name__).setLevel(logging.ERROR)

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
INFO = "var/lib/dpkg/info/"
_COPYRIGHT = re.compile(r"usr/share/doc/([^/]+)/copyright")
_COMMON_LICENSE = re.compile(r"/?usr/share/common-licenses/([0-9A-Za-z_.+-]+[0-9A-Za-z+])")


def _depends(fields: Packages) -> tuple[str, ...]:
    names: list[str] = []
    for key in ("pre-depends", "depends"):
        for alternatives in fields.relations[key] or ():
            name = alternatives[0]["name"] if alternatives else ""  # the first, as Trivy
            if name and name not in names:
                names.append(name)
    return tuple(names)


def _add(found: list[str], name: str) -> None:
    if name and name not in found:
        found.append(name)


def _licenses(text: str) -> tuple[str, ...]:
    found: list[str] = []
    try:
        parsed = dep5.Copyright(text.splitlines(), strict=False)
    except (dep5.NotMachineReadableError, dep5.MachineReadableFormatError, ValueError):
        parsed = None
    if parsed is not None:
        paragraphs = [p.license for p in parsed.all_files_paragraphs()]
        for license_ in [parsed.header.license, *paragraphs]:
            synopsis = getattr(license_, "synopsis", "")  # (python-debian types it loosely)
            if isinstance(synopsis, str) and synopsis:
                _add(found, dep5_expression(synopsis))
        return tuple(found)
    for line in text.splitlines():
        if line.startswith("License:"):
            _add(found, dep5_expression(line[len("License:") :]))
        elif match := _COMMON_LICENSE.search(line):
            _add(found, spdx(match.group(1)))
    return tuple(found)


@register
class DpkgCataloger(LayerCataloger):
    """Installed Debian packages with source package, dependencies, files and licenses."""

    name = "dpkg"
    version = 2
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
        namespace = purl_namespace(os_info, "debian")
        stanzas = 0
        for fields in Packages.iter_paragraphs(text, use_apt_pkg=False):
            stanzas += 1
            name, version = fields.get("Package", ""), fields.get("Version", "")
            if not name or not version:
                warn(entry.path, "skipped a stanza without Package and Version")
                continue
            if "installed" not in fields.get("Status", "install ok installed").split():
                continue
            try:
                Version(version)
            except ValueError:
                warn(entry.path, f"skipped {name}: invalid version {version!r}")
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
        if not stanzas and text.strip():
            warn(entry.path, "skipped: no package stanza in it")
        return packages
