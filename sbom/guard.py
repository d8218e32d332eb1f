"""Runs one cataloger on one layer's files so that no single file can abort the SBOM.

Catalogers skip what they cannot read and :func:`~sbom.interface.warn` about it. Whatever
escapes them anyway (a parser bug on a hostile file: ``RecursionError``, ``IndexError``…) is
contained here: the batch is retried file by file, so only the file that raises is lost, and
it is named in a warning. Packages that could never be written (no name or version, a purl
that does not build) are dropped with a warning too, since writing the SBOM would fail on them
long after the cataloger returned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sbom.interface import (
    CatalogerError,
    FileEntry,
    LayerCataloger,
    OSInfo,
    Package,
    collect_warnings,
    warn,
)

__all__ = ["catalog_files", "run_cataloger"]

log = logging.getLogger(__name__)


def _writable(package: Package) -> str | None:
    """Why ``package`` cannot be written to an SBOM, or None when it can."""
    if not package.name.strip():
        return "no name"
    if not package.version:
        return None  # a record (file list, licence) the merge joins to a real package
    try:
        package.purl()
    except ValueError as exc:
        return f"no package URL ({exc})"
    return None


def _run(
    cataloger: LayerCataloger, files: Sequence[FileEntry], os_info: OSInfo | None
) -> dict[str, list[Package]]:
    try:
        return {path: list(pkgs) for path, pkgs in cataloger.catalog(files, os_info).items()}
    except CatalogerError:
        raise
    except Exception as exc:
        if len(files) == 1:
            warn(files[0].path, f"cataloger {cataloger.name} could not read it: {exc!r}")
            return {files[0].path: []}
        log.warning("cataloger %s raised %r: retrying file by file", cataloger.name, exc)
        out: dict[str, list[Package]] = {}
        for entry in files:
            out.update(_run(cataloger, [entry], os_info))
        return out


def run_cataloger(
    cataloger: LayerCataloger, files: Sequence[FileEntry], os_info: OSInfo | None
) -> tuple[dict[str, list[Package]], list[str]]:
    """(packages per file, warnings) of ``cataloger`` on one layer's ``files``; raises only
    :class:`CatalogerError` (nothing usable)."""
    with collect_warnings() as warnings:
        found = _run(cataloger, files, os_info)
        for path, packages in found.items():
            kept = []
            for package in packages:
                problem = _writable(package)
                if problem is None:
                    kept.append(package)
                else:
                    warn(path, f"skipped {package.type} package {package.name!r}: {problem}")
            found[path] = kept
    return found, warnings


def catalog_files(
    cataloger: LayerCataloger, files: Sequence[FileEntry]
) -> tuple[dict[str, list[Package]], list[str]]:
    """(packages per file, warnings) of ``cataloger`` on ``files`` it catalogues one by one
    (:meth:`~sbom.interface.LayerCataloger.per_file`), with an entry for every file even when
    it gave nothing; raises nothing."""
    try:
        found, warnings = run_cataloger(cataloger, files, None)
    except CatalogerError as exc:
        found, warnings = (
            {},
            [f"{e.path}: cataloger {cataloger.name} could not read it: {exc}" for e in files],
        )
    for entry in files:
        found.setdefault(entry.path, [])
    return found, warnings
