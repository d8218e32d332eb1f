"""Installed Python distributions: ``*.dist-info/METADATA``, ``*.egg-info`` (file or dir) and
eggs (``*.egg`` zip archives, read from memory with a cap on the metadata member, and unzipped
``*.egg/EGG-INFO/PKG-INFO``), as Trivy's ``python-pkg`` analyzer reads them."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence

from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, extension, register, warn
from sbom.licenses import is_spdx, spdx, spdx_all

log = logging.getLogger(__name__)

_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_CLASSIFIER = "License :: "
MAX_METADATA = 1024 * 1024


def _licenses(
    message: Mapping[str, str], classifiers: list[str], files: list[str]
) -> tuple[str, ...]:
    """The package's licences, in the order of precedence consumers use (Trivy, pip-licenses):
    ``License-Expression`` (PEP 639), then the ``License ::`` classifiers, then a short
    ``License:`` field (long ones are the licence's text), then the names of ``License-File``
    entries that name a licence (``LICENSE.MIT``, ``LICENSES/Apache-2.0.txt``)."""
    expression = (message.get("License-Expression") or "").strip()
    if expression:
        return (spdx(expression),)
    names = [c.split("::")[-1].strip() for c in classifiers if c.startswith(_CLASSIFIER)]
    found = spdx_all([name for name in names if name != "OSI Approved"])
    if found:
        return found
    text = (message.get("License") or "").strip()
    if text and text.upper() != "UNKNOWN" and "\n" not in text and len(text) < 100:
        return (spdx(text),)
    named = []
    for name in files:
        stem = name.rsplit("/", 1)[-1]
        for candidate in (stem.removesuffix(".txt").removesuffix(".md"), stem.partition(".")[2]):
            if candidate and is_spdx(candidate) and "LicenseRef" not in spdx(candidate):
                named.append(spdx(candidate))
                break
    return tuple(dict.fromkeys(named))


def _metadata_text(entry: FileEntry) -> str:
    """The metadata's text; for a zipped ``.egg``, its ``EGG-INFO/PKG-INFO`` (capped)."""
    if not entry.path.endswith(".egg"):
        return entry.data.decode("utf-8", "replace")
    with zipfile.ZipFile(io.BytesIO(entry.data)) as archive:
        try:
            info = archive.getinfo("EGG-INFO/PKG-INFO")
        except KeyError:
            raise ValueError("no EGG-INFO/PKG-INFO in it") from None
        if info.file_size > MAX_METADATA:
            raise ValueError(f"EGG-INFO/PKG-INFO is {info.file_size} bytes")
        with archive.open(info) as member:
            return member.read(MAX_METADATA).decode("utf-8", "replace")


_METADATA_FILES = (
    ".dist-info/METADATA",
    ".egg-info/PKG-INFO",
    ".egg-info",
    ".egg",  # a zipped egg: its EGG-INFO/PKG-INFO
    ".egg/EGG-INFO/PKG-INFO",  # an unzipped egg
)


@register
class PythonCataloger(LayerCataloger):
    """Python packages from their installed metadata."""

    name = "python"
    version = 2
    max_size = 32 * 1024 * 1024  # eggs are whole archives

    extensions = frozenset(extension(suffix) for suffix in _METADATA_FILES)

    def wants(self, path: str) -> bool:
        return path.endswith(_METADATA_FILES)

    def per_file(self, path: str) -> bool:
        """Each metadata file on its own, as it is read (it needs no OS)."""
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        from email.parser import HeaderParser  # for Python packages only (~15 ms: email.utils)

        out: dict[str, list[Package]] = {}
        parser = HeaderParser()
        for entry in files:
            try:
                text = _metadata_text(entry)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
                warn(entry.path, f"skipped: not a readable egg: {exc}")
                out[entry.path] = []
                continue
            message = parser.parsestr(text)
            name, version = message.get("Name"), message.get("Version")
            if not name or not version:
                warn(entry.path, "skipped: metadata without Name and Version")
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
                    licenses=_licenses(
                        {k: str(v) for k, v in message.items()},
                        classifiers,
                        [str(f) for f in message.get_all("License-File") or []],
                    ),
                    depends=tuple(requires),
                    path=entry.path,
                )
            ]
        return out
