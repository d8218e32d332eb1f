"""Debian packages: ``var/lib/dpkg/status`` and ``status.d/`` (distroless), the file lists in
``var/lib/dpkg/info/*.list`` and the licenses of ``usr/share/doc/*/copyright``.

File lists and copyright files may sit in other layers than the status file, so they are
returned as *records* (packages with an empty version) that the merge joins by name.

Status files are parsed with python-debian's deb822 parser, and versions checked with its
Debian version rules (a stanza with an invalid version is skipped with a warning, as Trivy
does). In copyright files in the machine-readable format (DEP-5), the header's and each
``Files:`` paragraph's licence synopsis becomes one SPDX expression (DEP-5's commas bind looser
than ``and``/``or``). Other copyright files give the
``License:`` lines they have and their ``/usr/share/common-licenses/…`` references.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from debian.deb822 import Deb822
from debian.debian_support import Version

from sbom.catalogers._common import distro_qualifier, purl_namespace
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn
from sbom.licenses import dep5_expression, spdx

log = logging.getLogger(__name__)

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
INFO = "var/lib/dpkg/info/"
_COPYRIGHT = re.compile(r"usr/share/doc/([^/]+)/copyright")
_DEP_NAME = re.compile(r"\s*([a-zA-Z0-9][a-zA-Z0-9.+-]*)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_FILES = re.compile(r"^Files:", re.MULTILINE)
_COMMON_LICENSE = re.compile(r"/?usr/share/common-licenses/([0-9A-Za-z_.+-]+[0-9A-Za-z+])")


def _depends(fields: Mapping[str, str]) -> tuple[str, ...]:
    """Names of the first alternative of each Pre-Depends/Depends clause (as Trivy); the
    relation syntax needs no more than this (python-debian's relation parser costs as much as
    the paragraph parsing)."""
    names: list[str] = []
    for key in ("Pre-Depends", "Depends"):
        for clause in fields.get(key, "").split(","):
            match = _DEP_NAME.match(clause.split("|", 1)[0])
            if match and match.group(1) not in names:
                names.append(match.group(1))
    return tuple(names)


def _add(found: list[str], name: str) -> None:
    if name and name not in found:
        found.append(name)


def _synopsis(block: str) -> str:
    """The first line of a paragraph's ``License:`` field ('' without one)."""
    for line in block.splitlines():
        if line.startswith("License:"):
            return line[len("License:") :].strip()
    return ""


def _licenses(text: str) -> tuple[str, ...]:
    found: list[str] = []
    if text.startswith("Format:") or text.lstrip().startswith("Format:"):  # DEP-5
        # Only each paragraph's License synopsis is needed, so the paragraphs are split and
        # scanned here: the deb822 parser costs 0.5 ms a paragraph and Debian's copyright files
        # have ~1 500 paragraphs per image (the status files, which need every field, use it).
        blocks = _PARAGRAPH_BREAK.split(text)
        for index, block in enumerate(blocks):
            if index == 0 or _FILES.search(block):
                if synopsis := _synopsis(block):
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
        # Lines, never the text: python-debian opens a one-line str that names an existing file
        # as that file, so a status file holding "/var/lib/dpkg/status" listed the host's own.
        for fields in Deb822.iter_paragraphs(text.splitlines(), use_apt_pkg=False):
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
