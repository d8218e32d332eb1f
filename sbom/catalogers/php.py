"""PHP packages installed by Composer: ``vendor/composer/installed.json``.

Composer 2 writes ``{"packages": [...], "dev": …}``; Composer 1 wrote a bare array of the same
package objects. Both are read (Trivy 0.76 reads only the Composer 2 form). Each object's
``name`` is ``vendor/package`` (purl namespace/name) and ``version`` is kept as written
(``v5.4.0`` stays ``v5.4.0``, like Trivy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from sbom.catalogers.golang import each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn
from sbom.licenses import spdx_all

__all__ = ["ComposerInstalledCataloger", "parse_installed_json"]

MAX_PACKAGES = 100_000
# Composer's rule for package names: vendor/project, both non-empty, no further slash.
_NAME = re.compile(
    r"([a-z0-9](?:[_.-]?[a-z0-9]+)*)/([a-z0-9](?:(?:[_.]|-{1,2})?[a-z0-9]+)*)", re.IGNORECASE
)


def _licenses(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return spdx_all([value])
    if isinstance(value, list):
        return spdx_all([item for item in value if isinstance(item, str)])
    return ()


def parse_installed_json(document: object, path: str = "installed.json") -> list[Package]:
    """Packages from a decoded ``installed.json`` (v1 array or v2 object)."""
    if isinstance(document, dict):
        document = document.get("packages")
    if not isinstance(document, list):
        raise ValueError("neither a package list nor an object with 'packages'")
    packages = []
    for entry in document[:MAX_PACKAGES]:
        if not isinstance(entry, dict):
            continue
        full, version = entry.get("name"), entry.get("version")
        if not isinstance(full, str) or not isinstance(version, str) or not full or not version:
            continue
        match = _NAME.fullmatch(full.strip())
        if match is None:
            warn(path, f"skipped: {full!r} is not a Composer package name (vendor/name)")
            continue
        packages.append(
            Package(
                type="composer",
                namespace=match.group(1),
                name=match.group(2),
                version=version,
                licenses=_licenses(entry.get("license")),
            )
        )
    return packages


@register
class ComposerInstalledCataloger(LayerCataloger):
    """Composer's record of installed vendor packages."""

    name = "composer-installed"
    version = 2
    max_size = 32 * 1024 * 1024

    extensions = frozenset({"json"})

    def wants(self, path: str) -> bool:
        """``installed.json`` files (Composer keeps them in ``vendor/composer/``)."""
        return path.rsplit("/", 1)[-1] == "installed.json"

    def per_file(self, path: str) -> bool:
        """Each installed.json on its own, as it is read (it needs no OS)."""
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per ``installed.json``."""
        return each_file(
            files, lambda f: parse_installed_json(json.loads(f.data), f.path), "installed.json"
        )
