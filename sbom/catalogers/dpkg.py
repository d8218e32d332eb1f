"""Debian packages: ``var/lib/dpkg/status`` and ``status.d/`` (distroless), the file lists in
``var/lib/dpkg/info/*.list`` and the licenses of ``usr/share/doc/*/copyright``.

File lists and copyright files may sit in other layers than the status file, so they are
returned as *records* (packages with an empty version) that the merge joins by name.

Status files are read as python-debian's deb822 parser reads them (:func:`_paragraphs`; files
with comment or PGP lines by that parser itself), and versions checked with python-debian's
Debian version rules (a stanza with an invalid version is skipped with a warning, as Trivy
does). In copyright files in the machine-readable format (DEP-5), the header's and each
``Files:`` paragraph's licence synopsis becomes one SPDX expression (DEP-5's commas bind looser
than ``and``/``or``). Other copyright files give the
``License:`` lines they have and their ``/usr/share/common-licenses/…`` references.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence

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
# python-debian's field line (``Deb822._new_field_re``), so that both parsers read the same fields
_FIELD = re.compile(r"^(?P<key>[^: \t\n\r\f\v]+)\s*:\s*(?P<data>(?:\S+(\s+\S+)*)?)\s*$")
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_COMMON_LICENSE = re.compile(r"/?usr/share/common-licenses/([0-9A-Za-z_.+-]+[0-9A-Za-z+])")


def _depends(fields: Mapping[str, str]) -> tuple[str, ...]:
    """Names of the first alternative of each Pre-Depends/Depends clause (as Trivy); the
    relation syntax needs no more than this (python-debian's relation parser costs as much as
    the paragraph parsing)."""
    names: list[str] = []
    for key in ("pre-depends", "depends"):
        for clause in fields.get(key, "").split(","):
            match = _DEP_NAME.match(clause.split("|", 1)[0])
            if match and match.group(1) not in names:
                names.append(match.group(1))
    return tuple(names)


def _paragraphs(lines: list[str]) -> Iterator[dict[str, str]]:
    """The stanzas of a status file, as python-debian's deb822 parser reads them: field names
    case-insensitive (lower-cased here), a later duplicate field wins, continuation lines
    joined with newlines, other lines ignored; blank or whitespace-only lines end a stanza; the
    first stanza without a field ends the file.

    Written here because python-debian costs ~0.1 s per image (0.05 s to import, the rest to
    parse ~200 stanzas), a tenth of an SBOM's time. Lines starting with ``#`` or ``-`` (comments
    and PGP armour, which deb822 treats specially) send the whole file to deb822 itself.
    """
    if any(line[:1] in ("#", "-") for line in lines):
        from debian.deb822 import Deb822  # the rare file: python-debian decides

        # Lines, never the text: python-debian opens a one-line str naming an existing file
        # as that file (a status file holding "/var/lib/dpkg/status" listed the host's own).
        for stanza in Deb822.iter_paragraphs(lines, use_apt_pkg=False):
            yield {name.lower(): str(value) for name, value in stanza.items()}
        return
    fields: dict[str, str] = {}
    key: str | None = None
    started = False
    for line in [*lines, ""]:
        if not line.strip(_ASCII_SPACE):  # deb822 tests bytes: only ASCII whitespace is blank
            if started:
                if not fields:
                    return  # deb822 stops at a stanza without a field
                yield fields
                fields, key, started = {}, None, False
            continue
        started = True
        match = _FIELD.match(line)
        if match:
            key = match.group("key").lower()
            fields[key] = match.group("data")
        elif key is not None and line[0].isspace() and not line.isspace():
            fields[key] += "\n" + line


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

    def per_file(self, path: str) -> bool:
        """File lists and copyright files (records that need no OS) as they are read; the
        status files, whose purls name the OS, wait for the layer's end."""
        return path != STATUS and not path.startswith(STATUS_D)

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
        for fields in _paragraphs(text.splitlines()):
            stanzas += 1
            name, version = fields.get("package", ""), fields.get("version", "")
            if not name or not version:
                warn(entry.path, "skipped a stanza without Package and Version")
                continue
            if "installed" not in fields.get("status", "install ok installed").split():
                continue
            try:
                Version(version)
            except ValueError:
                warn(entry.path, f"skipped {name}: invalid version {version!r}")
                continue
            source, _, source_version = fields.get("source", name).partition(" ")
            qualifiers = (
                (("arch", fields.get("architecture", "")),) if "architecture" in fields else ()
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
                    properties=(("maintainer", fields["maintainer"]),)
                    if "maintainer" in fields
                    else (),
                )
            )
        if not stanzas and text.strip():
            warn(entry.path, "skipped: no package stanza in it")
        return packages
