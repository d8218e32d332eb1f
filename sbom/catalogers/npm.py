"""Installed npm packages: ``node_modules/<name>/package.json`` (and ``@scope/<name>``).

Lock files describe what *would* be installed; in an image the installed ``package.json`` files
are the truth (Trivy's image scan reads the same), so lock files are not read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sbom.catalogers._common import normalise_license
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

log = logging.getLogger(__name__)


def _license(data: Mapping[str, Any]) -> tuple[str, ...]:
    value = data.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, str) and value.strip():
        return (normalise_license(value),)
    found = [
        normalise_license(str(item.get("type")))
        for item in data.get("licenses") or []
        if isinstance(item, dict) and item.get("type")
    ]
    return tuple(found)


@register
class NpmCataloger(LayerCataloger):
    """npm packages installed under any ``node_modules``."""

    name = "npm"
    version = 1
    max_size = 4 * 1024 * 1024

    def wants(self, path: str) -> bool:
        if not path.endswith("/package.json"):
            return False
        parts = path.split("/")
        # .../node_modules/<name>/package.json or .../node_modules/@scope/<name>/package.json
        return (len(parts) >= 3 and parts[-3] == "node_modules") or (
            len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")
        )

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        for entry in files:
            out[entry.path] = []
            try:
                data = json.loads(entry.data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("%s: skipped: not JSON", entry.path)
                continue
            if not isinstance(data, dict):
                log.warning("%s: skipped: not a JSON object", entry.path)
                continue
            name, version = data.get("name"), data.get("version")
            if not isinstance(name, str) or not isinstance(version, str) or not name:
                log.warning("%s: skipped: no name/version", entry.path)
                continue
            scope, slash, base = name.rpartition("/")
            deps = data.get("dependencies")
            out[entry.path] = [
                Package(
                    type="npm",
                    name=base,
                    version=version,
                    namespace=scope if slash else None,
                    licenses=_license(data),
                    depends=tuple(str(d) for d in deps) if isinstance(deps, dict) else (),
                    path=entry.path,
                )
            ]
        return out
