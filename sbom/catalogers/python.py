"""Installed Python distributions: ``*.dist-info/METADATA`` and ``*.egg-info`` (file or dir)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from email.parser import HeaderParser

from sbom.catalogers._common import normalise_license
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

log = logging.getLogger(__name__)

_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_CLASSIFIER = "License :: OSI Approved :: "


def _licenses(message: Mapping[str, str], classifiers: list[str]) -> tuple[str, ...]:
    expression = (message.get("License-Expression") or "").strip()
    if expression:
        return (expression,)
    text = (message.get("License") or "").strip()
    if text and text.upper() != "UNKNOWN" and "\n" not in text and len(text) < 100:
        return (normalise_license(text),)
    found = [
        normalise_license(c[len(_CLASSIFIER) :]) for c in classifiers if c.startswith(_CLASSIFIER)
    ]
    return tuple(dict.fromkeys(found))


@register
class PythonCataloger(LayerCataloger):
    """Python packages from their installed metadata."""

    name = "python"
    version = 1
    max_size = 4 * 1024 * 1024

    def wants(self, path: str) -> bool:
        return (
            path.endswith(".dist-info/METADATA")
            or path.endswith(".egg-info/PKG-INFO")
            or path.endswith(".egg-info")
        )

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        out: dict[str, list[Package]] = {}
        parser = HeaderParser()
        for entry in files:
            message = parser.parsestr(entry.data.decode("utf-8", "replace"))
            name, version = message.get("Name"), message.get("Version")
            if not name or not version:
                log.warning("%s: skipped metadata without Name/Version", entry.path)
                out[entry.path] = []
                continue
            requires = [
                m.group(1)
                for r in message.get_all("Requires-Dist") or []
                if ";" not in r and (m := _REQUIREMENT.match(r))
            ]
            classifiers = [str(c) for c in message.get_all("Classifier") or []]
            out[entry.path] = [
                Package(
                    type="pypi",
                    name=str(name).strip(),
                    version=str(version).strip(),
                    licenses=_licenses({k: str(v) for k, v in message.items()}, classifiers),
                    depends=tuple(requires),
                    path=entry.path,
                )
            ]
        return out
