"""Java archives (JAR/WAR/EAR/PAR): Maven coordinates from the files inside the zip.

Follows Trivy's ``jar`` parser (pkg/dependency/parser/java/jar):

* every ``pom.properties`` with ``groupId``, ``artifactId`` and ``version`` is a package
  (shaded/uber jars carry several);
* nested archives (``WEB-INF/lib/*.jar`` …) are opened recursively;
* licences come from the ``pom.xml`` next to each ``pom.properties`` (``<licenses>``), and
  from ``Bundle-License`` for manifest coordinates (Trivy reads neither);
* ``MANIFEST.MF`` (main section) is the fallback when the archive has no usable
  ``pom.properties``: group from ``Implementation-Vendor-Id`` / ``Bundle-SymbolicName`` /
  ``Implementation-Vendor`` / ``Specification-Vendor``, artifact from ``Implementation-Title`` /
  ``Specification-Title`` / ``Bundle-Name``, version from ``Implementation-Version`` /
  ``Specification-Version`` / ``Bundle-Version``. Trivy confirms such coordinates (and
  identifies jars without any metadata) with its Java DB of Maven Central (SHA-1 lookups);
  we have no such DB, so we keep manifest coordinates only when they look like Maven ids
  (no whitespace) and report nothing for jars without metadata.

Archives are untrusted: they are read in place with :mod:`zipfile`, entries are
decompressed only up to their declared size (zipfile enforces it and checks the CRC), metadata
files are capped, nesting is limited in depth, and one budget bounds the bytes decompressed for
nested archives of one top-level file. A bad nested archive is skipped with a warning.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO

from sbom.catalogers.golang import each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn
from sbom.licenses import spdx_all

__all__ = ["JavaArchiveCataloger", "parse_archive"]

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".jar", ".war", ".ear", ".par")
MAX_DEPTH = 4
"""Nesting levels opened below the top-level archive."""
MAX_ENTRIES = 200_000
"""Zip central directories with more entries are refused (zip bomb / DoS guard)."""
MAX_METADATA = 1024 * 1024
"""``pom.properties`` / ``MANIFEST.MF`` bigger than this (uncompressed) are skipped."""
MAX_NESTED = 128 * 1024 * 1024
"""A nested archive bigger than this (uncompressed) is skipped."""
NESTED_BUDGET = 512 * 1024 * 1024
"""Total uncompressed bytes of nested archives read for one top-level archive."""

# Trivy's jarFileRegEx: artifactId-version.jar
_FILE_NAME = re.compile(r"^([a-zA-Z0-9._-]*[^-*])-(\d\S*(?:-SNAPSHOT)?)\.jar$")
_BAD_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    RuntimeError,
    EOFError,
    NotImplementedError,
    OSError,
    zlib.error,
)


@dataclass
class _Budget:
    """Bytes of nested archives still allowed for the current top-level file."""

    remaining: int = NESTED_BUDGET
    """Uncompressed bytes left."""


@dataclass(frozen=True)
class _Coordinates:
    """A Maven group/artifact/version triple."""

    group: str
    """groupId."""
    artifact: str
    """artifactId."""
    version: str
    """version."""
    source: str = "pom.properties"
    """Which file the coordinates came from."""
    licenses: tuple[str, ...] = ()
    """Licences the archive states for it (``pom.xml`` ``<licenses>``, ``Bundle-License``)."""

    def valid(self) -> bool:
        return bool(self.group and self.artifact and self.version)


@dataclass
class _Manifest:
    """Main-section attributes of a ``MANIFEST.MF``."""

    attributes: dict[str, str] = field(default_factory=dict)
    """Attribute name -> value (first occurrence wins)."""

    def first(self, *names: str) -> str:
        return next((self.attributes[n] for n in names if self.attributes.get(n)), "")

    def licenses(self) -> tuple[str, ...]:
        """``Bundle-License`` (OSGi: comma-separated names or URLs), as SPDX."""
        stated = self.attributes.get("Bundle-License", "")
        return spdx_all([part for part in stated.split(",") if part.strip()])

    def coordinates(self) -> _Coordinates | None:
        group = self.attributes.get("Implementation-Vendor-Id", "")
        if not group and (symbolic := self.attributes.get("Bundle-SymbolicName", "")):
            symbolic = symbolic.split(";", 1)[0].strip()
            group = symbolic.rpartition(".")[0] or symbolic
        group = group or self.first("Implementation-Vendor", "Specification-Vendor")
        artifact = self.first("Implementation-Title", "Specification-Title", "Bundle-Name")
        version = self.first("Implementation-Version", "Specification-Version", "Bundle-Version")
        found = _Coordinates(group, artifact, version, "MANIFEST.MF", self.licenses())
        if not found.valid() or any(" " in v or "\t" in v for v in (group, artifact, version)):
            return None
        return found


def parse_pom_properties(text: str) -> _Coordinates:
    """``groupId``/``artifactId``/``version`` lines of a ``pom.properties``."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition("=")
        if sep and key in ("groupId", "artifactId", "version"):
            values[key] = value.strip()
    return _Coordinates(
        values.get("groupId", ""), values.get("artifactId", ""), values.get("version", "")
    )


def parse_manifest(text: str) -> _Manifest:
    """The main section of a manifest: up to the first blank line, continuations unfolded."""
    manifest = _Manifest()
    logical: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            break
        if line.startswith(" ") and logical:
            logical[-1] += line[1:]
        else:
            logical.append(line)
    for line in logical:
        name, sep, value = line.partition(":")
        value = value.strip()
        if sep and value and not value.startswith("%"):  # %var: unresolved bundle variable
            manifest.attributes.setdefault(name.strip(), value)
    return manifest


def parse_pom_licenses(data: bytes) -> tuple[str, ...]:
    """The ``<licenses><license><name>`` (or ``<url>``) entries of a ``pom.xml``, as SPDX.

    The file is capped at :data:`MAX_METADATA` before it gets here, and parsed with defusedxml
    (no entity expansion, no external entities, no DTD tricks).
    """
    from xml.etree.ElementTree import ParseError  # imported for the first pom.xml only

    from defusedxml import ElementTree

    try:
        root = ElementTree.fromstring(data)
    except (ParseError, ValueError) as exc:  # defusedxml's refusals are ValueErrors
        raise ValueError(f"pom.xml: {exc}") from None
    texts = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "license":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in element}
        if fields.get("name") or fields.get("url"):
            texts.append(fields.get("name") or fields.get("url", ""))
    return spdx_all(texts)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    if info.file_size > limit:
        log.warning("skipping %s: %d bytes exceeds %d", info.filename, info.file_size, limit)
        return None
    with archive.open(info) as member:
        return member.read(limit + 1)[:limit]


def _maven(found: _Coordinates, archive_path: str) -> Package:
    return Package(
        type="maven",
        namespace=found.group,
        name=found.artifact,
        version=found.version,
        licenses=found.licenses,
        properties=(("java:archive", archive_path), ("java:metadata", found.source)),
    )


def parse_archive(
    data: bytes | IO[bytes], archive_path: str, *, depth: int = 0, budget: _Budget | None = None
) -> list[Package]:
    """Maven packages in a zip archive and, recursively, in the archives it contains.

    ``archive_path`` names the archive in results (nested ones as ``outer.war/WEB-INF/lib/x.jar``,
    like Trivy's ``FilePath``). Raises ``zipfile.BadZipFile`` / ``ValueError`` for the top level.
    """
    budget = budget or _Budget()
    with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ValueError(f"{len(infos)} entries exceed {MAX_ENTRIES}")
        packages: list[_Coordinates] = []
        poms: dict[str, tuple[str, ...]] = {}  # directory → licences of its pom.xml
        nested: list[Package] = []
        manifest = _Manifest()
        for info in infos:
            if info.is_dir():
                continue
            base = posixpath.basename(info.filename)
            try:
                if base == "pom.properties":
                    raw = _read_member(archive, info, MAX_METADATA)
                    found = parse_pom_properties(raw.decode("utf-8", "replace") if raw else "")
                    if found.valid():
                        packages.append(replace(found, source=posixpath.dirname(info.filename)))
                elif base == "pom.xml" and info.filename.startswith("META-INF/maven/"):
                    raw = _read_member(archive, info, MAX_METADATA)
                    poms[posixpath.dirname(info.filename)] = parse_pom_licenses(raw or b"")
                elif base == "MANIFEST.MF":
                    raw = _read_member(archive, info, MAX_METADATA)
                    manifest = parse_manifest(raw.decode("utf-8", "replace")) if raw else manifest
                elif base.lower().endswith(ARCHIVE_SUFFIXES):
                    nested += _nested(archive, info, archive_path, depth, budget)
            except _BAD_ZIP as exc:
                warn(archive_path, f"skipped {info.filename}: {exc}")
    # the manifest describes the archive: its licence is the one artifact's when there is one
    fallback = manifest.licenses() if len(packages) == 1 else ()
    found_packages = [
        _maven(
            replace(c, source="pom.properties", licenses=poms.get(c.source) or fallback),
            archive_path,
        )
        for c in packages
    ]
    if not packages and (found_mf := manifest.coordinates()) is not None:
        found_packages.append(_maven(found_mf, archive_path))
    return _unique(found_packages + nested)


def _nested(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, parent: str, depth: int, budget: _Budget
) -> list[Package]:
    inner_path = posixpath.normpath(posixpath.join(parent, info.filename))
    if not inner_path.startswith(parent + "/"):  # zip slip: "../x.jar" names
        log.warning("skipping %s in %s: path escapes the archive", info.filename, parent)
        return []
    if depth + 1 > MAX_DEPTH:
        log.warning("skipping %s: nested deeper than %d", inner_path, MAX_DEPTH)
        return []
    if info.file_size > min(MAX_NESTED, budget.remaining):
        log.warning(
            "skipping %s: %d bytes exceeds the nested size limit", inner_path, info.file_size
        )
        return []
    budget.remaining -= info.file_size
    raw = _read_member(archive, info, MAX_NESTED)
    if raw is None:
        return []
    try:
        return parse_archive(raw, inner_path, depth=depth + 1, budget=budget)
    except _BAD_ZIP as exc:
        log.warning("skipping nested archive %s: %s", inner_path, exc)
        return []


def _unique(packages: list[Package]) -> list[Package]:
    seen: set[tuple[str | None, str, str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for pkg in packages:
        key = (pkg.namespace, pkg.name, pkg.version, pkg.properties[:1])
        if key not in seen:
            seen.add(key)
            unique.append(pkg)
    return unique


@register
class JavaArchiveCataloger(LayerCataloger):
    """Maven artifacts in JAR, WAR, EAR and PAR files."""

    name = "jar"
    version = 2
    max_size = 512 * 1024 * 1024

    extensions = frozenset(suffix[1:] for suffix in ARCHIVE_SUFFIXES)

    def wants(self, path: str) -> bool:
        """Files ending in ``.jar``, ``.war``, ``.ear`` or ``.par`` (any case)."""
        return path.lower().endswith(ARCHIVE_SUFFIXES)

    def per_file(self, path: str) -> bool:
        """Each archive on its own, as it is read (it needs no OS)."""
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per archive."""
        return each_file(files, _parse_file, "Java archive")


def _parse_file(entry: FileEntry) -> list[Package]:
    with entry.open() as stream:  # read in place: archives may be hundreds of MiB
        return parse_archive(stream, entry.path)
