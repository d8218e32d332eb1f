"""Overlay merge of per-layer results, as the container runtime would stack the layers.

An upper layer's file replaces the lower one's packages for that path; whiteouts delete a path
and everything under it; an opaque directory hides what lower layers put in it. Then the
*records* of OS catalogers (packages with an empty version: file lists, copyright licenses,
possibly from another layer) are joined to the packages of the same name, and language packages
whose source file an OS package owns are dropped (the OS package already reports them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from sbom.cache import LayerResult
from sbom.interface import LayerCataloger, Package

__all__ = ["apply_deletions", "merge_layers"]

T = TypeVar("T")


def _deleted(path: str, whiteouts: Sequence[str], opaque: Sequence[str]) -> bool:
    for gone in whiteouts:
        if path == gone or path.startswith(gone + "/"):
            return True
    return any(path.startswith(directory + "/") for directory in opaque)


def apply_deletions(state: dict[str, T], whiteouts: Sequence[str], opaque: Sequence[str]) -> None:
    """Remove from ``state`` (path → anything) what a layer's whiteouts delete."""
    if not whiteouts and not opaque:
        return
    for path in [p for p in state if _deleted(p, whiteouts, opaque)]:
        del state[path]


def _join_records(packages: list[Package]) -> list[Package]:
    extra: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    real: list[Package] = []
    for package in packages:
        if package.version:
            real.append(package)
            continue
        owned, licenses = extra.setdefault((package.type, package.name), (set(), []))
        owned.update(package.owned_files)
        licenses.extend(x for x in package.licenses if x not in licenses)
    joined = []
    for package in real:
        owned, licenses = extra.get((package.type, package.name), (set(), []))
        source = extra.get((package.type, package.source_name or ""), (set(), []))[1]
        joined.append(
            dataclasses.replace(
                package,
                owned_files=tuple(sorted(set(package.owned_files) | owned)),
                licenses=package.licenses or tuple(licenses) or tuple(source),
            )
        )
    return joined


def _identity(package: Package) -> tuple[object, ...]:
    return (package.type, package.namespace, package.name, package.version, package.qualifiers)


def merge_layers(
    layers: Iterable[LayerResult], catalogers: Mapping[str, LayerCataloger]
) -> list[Package]:
    """The image's packages from its catalogued layers (bottom first)."""
    state: dict[str, dict[str, list[Package]]] = {}  # path → cataloger → packages
    for layer in layers:
        apply_deletions(state, layer.whiteouts, layer.opaque_dirs)
        for cataloger, paths in layer.packages.items():
            for path, packages in paths.items():
                slot = state.setdefault(path, {})
                # a package an upper layer rewrites unchanged (say, dpkg's status file after a
                # purge) still comes from the layer that installed it, as Trivy reports it
                before = {
                    _identity(p): p.layer_digest for p in slot.get(cataloger, ()) if p.version
                }
                slot[cataloger] = [
                    dataclasses.replace(p, layer_digest=before.get(_identity(p), layer.digest))
                    if p.version
                    else p
                    for p in packages
                ]
    os_found: list[Package] = []
    language: list[Package] = []
    for path in sorted(state):
        for cataloger, packages in sorted(state[path].items()):
            known = catalogers.get(cataloger)
            (os_found if known is not None and known.os_packages else language).extend(packages)
    os_packages = _join_records(os_found)
    owned = {f for p in os_packages for f in p.owned_files}
    return os_packages + [p for p in language if p.path not in owned]
