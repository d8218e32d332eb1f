"""npm packages: every ``package.json`` with a name and a version, as Trivy's image scan reads
them (``node-pkg``): the installed ones under any ``node_modules`` and an application's own
manifest elsewhere (``/app/package.json``).

Lock files describe what *would* be installed; in an image the installed ``package.json`` files
are the truth (Trivy's image scan reads the same), so lock files are not read. A manifest
without a name or version (``npm install --prefix`` writes one holding only dependencies) is
skipped silently, as Trivy does; one whose name is not a valid npm name is skipped with a
warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sbom.catalogers.golang import each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn
from sbom.licenses import spdx_all

__all__ = ["NpmCataloger", "parse_package_json"]

# npm's rules (validate-npm-package-name), loosened to what old registries accepted: an optional
# @scope/ and a name, neither empty, no slash, whitespace or leading dot/underscore in the name.
_NAME = re.compile(r"(?:(@[^/\s@][^/\s]*)/)?([^/\s._@][^/\s]*)")
MAX_NAME = 214


def _license_texts(value: object) -> list[str]:
    """``"MIT"``, ``{"type": "MIT"}``, ``["MIT", {"type": "ISC"}]`` (npm's current and legacy
    forms)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return _license_texts(value.get("type"))
    if isinstance(value, list):
        return [text for item in value[:64] for text in _license_texts(item)]
    return []


def _licenses(data: Mapping[str, Any]) -> tuple[str, ...]:
    return spdx_all(_license_texts(data.get("license")) or _license_texts(data.get("licenses")))


def parse_package_json(entry: FileEntry) -> list[Package]:
    """The package a ``package.json`` describes, or nothing."""
    data = json.loads(entry.data)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    name, version = data.get("name"), data.get("version")
    if not name or not version:
        return []  # an application manifest without identity: nothing to report (as Trivy)
    if not isinstance(name, str) or not isinstance(version, str):
        raise ValueError("name and version are not strings")
    match = _NAME.fullmatch(name.strip())
    if match is None or len(name) > MAX_NAME or not version.strip():
        warn(entry.path, f"skipped: {name!r} is not a valid npm package name")
        return []
    deps = data.get("dependencies")
    return [
        Package(
            type="npm",
            name=match.group(2),
            version=version.strip(),
            namespace=match.group(1),
            licenses=_licenses(data),
            depends=tuple(str(d) for d in deps) if isinstance(deps, dict) else (),
        )
    ]


@register
class NpmCataloger(LayerCataloger):
    """npm packages and applications described by ``package.json`` files."""

    name = "npm"
    version = 2
    max_size = 4 * 1024 * 1024

    extensions = frozenset({"json"})

    def wants(self, path: str) -> bool:
        return path.endswith("/package.json") or path == "package.json"

    def per_file(self, path: str) -> bool:
        """Each package.json on its own, as it is read (it needs no OS)."""
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        return each_file(files, parse_package_json, "package.json")
