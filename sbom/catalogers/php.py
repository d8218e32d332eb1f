"""PHP packages installed by Composer: ``vendor/composer/installed.json``.

Composer 2 writes ``{"packages": [...], "dev": …}``; Composer 1 wrote a bare array of the same
package objects. Both are read (Trivy 0.76 reads only the Composer 2 form). Each object's
``name`` is ``vendor/package`` (purl namespace/name) and ``version`` is kept as written
(``v5.4.0`` stays ``v5.4.0``, like Trivy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from sbom.catalogers.golang import each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

__all__ = ["ComposerInstalledCataloger", "parse_installed_json"]

MAX_PACKAGES = 100_000


def _licenses(value: object) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str) and item)
    return ()


def parse_installed_json(document: object) -> list[Package]:
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
        vendor, _, name = full.rpartition("/")
        packages.append(
            Package(
                type="composer",
                namespace=vendor or None,
                name=name,
                version=version,
                licenses=_licenses(entry.get("license")),
            )
        )
    return packages


@register
class ComposerInstalledCataloger(LayerCataloger):
    """Composer's record of installed vendor packages."""

    name = "composer-installed"
    version = 1
    max_size = 32 * 1024 * 1024

    def wants(self, path: str) -> bool:
        """``installed.json`` files (Composer keeps them in ``vendor/composer/``)."""
        return path.rsplit("/", 1)[-1] == "installed.json"

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per ``installed.json``."""
        return each_file(
            files, lambda f: parse_installed_json(json.loads(f.data)), "installed.json"
        )
