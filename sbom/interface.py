"""The cataloger interface, after Trivy's analyzers (pkg/fanal/analyzer).

Each cataloger registers itself, says which paths it needs (so each layer is streamed once and
only those files are read), and carries a version that keys the per-layer cache. A cataloger sees
the files it asked for from ONE layer and returns packages grouped by the file they came from;
the layers are then merged with overlay semantics (an upper layer's file replaces the lower one,
whiteouts delete), and packages whose files an OS package owns are dropped from the language
results. This file is the contract between the layer reader and the catalogers: keep it stable.
"""

from __future__ import annotations

import functools
import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from packageurl import PackageURL

__all__ = [
    "CATALOGERS",
    "CatalogerError",
    "FileEntry",
    "LayerCataloger",
    "OSInfo",
    "Package",
    "collect_warnings",
    "register",
    "warn",
]

log = logging.getLogger(__name__)
_WARNINGS: ContextVar[list[str] | None] = ContextVar("sbom_warnings", default=None)


def warn(path: str, problem: str) -> None:
    """Say that ``path`` (or part of it) could not be read and was skipped: logged, and kept
    as one of the SBOM's warnings when called under :func:`collect_warnings`."""
    log.warning("%s: %s", path, problem)
    found = _WARNINGS.get()
    if found is not None:
        found.append(f"{path}: {problem}")


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """The :func:`warn` calls made in this context (thread or task), in order."""
    found: list[str] = []
    token = _WARNINGS.set(found)
    try:
        yield found
    finally:
        _WARNINGS.reset(token)


class CatalogerError(Exception):
    """A file a cataloger asked for could not be parsed; the reader logs it and goes on."""


@dataclass(frozen=True)
class FileEntry:
    """One regular file from one layer, as a cataloger receives it.

    Small files are held in memory, bigger ones in a temporary file of the reader's (deleted when
    the SBOM is made): parse big formats from :meth:`open`, small ones from :attr:`data`.
    """

    path: str
    """Normalised path inside the image, relative, no leading slash (``var/lib/dpkg/status``)."""
    source: bytes | Path
    """The content, or the temporary file that holds it (a name the reader chose, never one from
    the image). The reader skips files over the cataloger's ``max_size``."""
    mode: int = 0o644
    """Permission bits."""

    @property
    def size(self) -> int:
        """The content's length in bytes."""
        if isinstance(self.source, Path):
            return self.source.stat().st_size
        return len(self.source)

    @property
    def data(self) -> bytes:
        """The whole content, read now (at most the cataloger's ``max_size`` bytes)."""
        if isinstance(self.source, Path):
            return self.source.read_bytes()
        return self.source

    def open(self) -> BinaryIO:
        """The content as a seekable binary stream (close it after use)."""
        if isinstance(self.source, Path):
            return self.source.open("rb")
        return io.BytesIO(self.source)


@dataclass(frozen=True)
class OSInfo:
    """The image's operating system, from ``etc/os-release`` and friends."""

    family: str
    """``debian``, ``ubuntu``, ``alpine``, ``redhat``, ``rocky``… (the purl namespace)."""
    version: str
    """Version id, e.g. ``12`` or ``3.19.1``."""
    name: str = ""
    """Pretty name."""


@dataclass(frozen=True)
class Package:
    """One package found in one file of one layer."""

    type: str
    """purl type: deb, apk, rpm, pypi, npm, golang, maven, cargo, gem or composer."""
    name: str
    """Name as the ecosystem spells it (purl-normalised by :meth:`purl`)."""
    version: str
    """Installed version (for deb/rpm with epoch as ``epoch:version``)."""
    namespace: str | None = None
    """purl namespace (``debian``, npm scope ``@scope``, maven group id, go module path prefix)."""
    qualifiers: tuple[tuple[str, str], ...] = ()
    """purl qualifiers, e.g. ``(("arch", "amd64"), ("distro", "debian-12"))``."""
    licenses: tuple[str, ...] = ()
    """Licenses the package states (SPDX ids or expressions where it uses them)."""
    source_name: str | None = None
    """Source package name (deb ``Source:``, rpm source rpm), when it differs or is known."""
    source_version: str | None = None
    """Source package version."""
    depends: tuple[str, ...] = ()
    """Names of packages this one depends on, as the package DB records them."""
    owned_files: tuple[str, ...] = ()
    """Files an OS package installed (normalised like :attr:`FileEntry.path`)."""
    path: str = ""
    """The file the package was read from (set by the cataloger)."""
    layer_digest: str = ""
    """The layer it came from (set by the reader)."""
    properties: tuple[tuple[str, str], ...] = field(default=())
    """Extra name/value pairs for the SBOM."""

    def purl(self) -> str:
        """The package URL (a deb/rpm epoch becomes the ``epoch`` qualifier, as Trivy writes it)."""
        return _purl(self.type, self.namespace, self.name, self.version, self.qualifiers)


@functools.lru_cache(maxsize=8192)  # each package's is needed twice: checked, then written
def _purl(
    kind: str,
    namespace: str | None,
    name: str,
    version: str,
    pairs: tuple[tuple[str, str], ...],
) -> str:
    qualifiers = dict(pairs)
    epoch, colon, rest = version.partition(":")
    if kind in ("deb", "rpm") and colon and epoch.isdigit():
        version = rest
        if epoch != "0":
            qualifiers["epoch"] = epoch
    return PackageURL(
        type=kind, namespace=namespace, name=name, version=version, qualifiers=qualifiers or None
    ).to_string()


class LayerCataloger(ABC):
    """Finds packages in the files of one layer."""

    name: str
    """Unique short name, e.g. ``dpkg``."""
    version: int
    """Bump when output changes: it keys the per-layer cache."""
    os_packages: bool = False
    """True for OS package managers, whose owned files language catalogers skip."""
    max_size: int = 64 * 1024 * 1024
    """Files bigger than this are not read for this cataloger."""
    extensions: frozenset[str] | None = None
    """The :func:`extension` of every path :meth:`wants` may accept, or None for any: the
    reader asks a cataloger only about the files whose extension it names (a Debian base layer
    has ~5,000 files; most have an extension no cataloger but a few looks for)."""

    @abstractmethod
    def wants(self, path: str) -> bool:
        """True when the file at ``path`` (normalised) is needed; cheap, called per entry."""

    def per_file(self, path: str) -> bool:
        """True when the file at ``path`` can be catalogued on its own and needs no OS: it may
        then be catalogued as soon as it is read, while the rest of the layer still streams
        (Trivy's analyzers); the other files wait for the layer's end and the image's OS
        (Trivy's post-analyzers). :meth:`catalog` then receives such files, possibly a few at a
        time, with ``os_info`` None. Default: False."""
        return False

    @abstractmethod
    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per source file path, from the wanted files of ONE layer.

        Return an entry (possibly an empty list) for every path that was read, so that an upper
        layer's file replaces what a lower layer's same path produced. Raise nothing for bad
        files or entries: skip them and say so with :func:`warn` (the SBOM carries it); raise
        :class:`CatalogerError` only if nothing is usable. Whatever a cataloger raises anyway
        costs only the file that caused it (the generator retries the others one by one).
        """


CATALOGERS: dict[str, LayerCataloger] = {}
"""Registered catalogers by name."""


def extension(path: str) -> str:
    """The file name's extension as :attr:`LayerCataloger.extensions` names it: lower-cased,
    after the name's last dot (``"gz"`` for ``share/x.tar.gz``, ``"egg-info"``), ``""`` when the
    name has no dot."""
    name = path.rpartition("/")[2]
    return name.rpartition(".")[2].lower() if "." in name else ""


def register(cls: type[LayerCataloger]) -> type[LayerCataloger]:
    """Class decorator: instantiate and register a cataloger."""
    instance = cls()
    if instance.name in CATALOGERS:
        raise ValueError(f"cataloger {instance.name!r} registered twice")
    CATALOGERS[instance.name] = instance
    return cls
