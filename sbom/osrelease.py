"""Operating-system detection from ``etc/os-release`` and friends, as Trivy does it."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from sbom.interface import OSInfo

__all__ = ["OS_FILES", "detect_os", "wants_os_file"]

OS_FILES = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/debian_version",
    "etc/alpine-release",
    "etc/redhat-release",
)
"""Files read for OS detection (normalised paths)."""


# os-release IDs Trivy names differently (pkg/fanal/analyzer/os/release; its family is the
# distro qualifier's prefix, ``distro=cbl-mariner-2.0``)
_FAMILIES = {
    "rhel": "redhat",
    "mariner": "cbl-mariner",
    "opensuse": "opensuse.leap",
    "opensuse-leap": "opensuse.leap",
    "opensuse-tumbleweed": "opensuse.tumbleweed",
    "amzn": "amazon",
    "ol": "oracle",
}


def wants_os_file(path: str) -> bool:
    """True for the files :func:`detect_os` reads."""
    return path in OS_FILES


def _parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, raw = line.strip().partition("=")
        if not eq or not key or key.startswith("#"):
            continue
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[key] = words[0] if words else ""
    return values


def detect_os(files: Mapping[str, bytes]) -> OSInfo | None:
    """The image's OS from the merged OS files (path → content), or None when none is known."""
    text = files.get("etc/os-release") or files.get("usr/lib/os-release")
    release = _parse_os_release(text.decode("utf-8", "replace")) if text else {}
    family = release.get("ID", "").lower()
    version = release.get("VERSION_ID", "")
    name = release.get("PRETTY_NAME", "")
    debian = files.get("etc/debian_version")
    alpine = files.get("etc/alpine-release")
    if family == "debian" or (not family and debian):
        # Trivy takes the point release from etc/debian_version (12.10, not 12)
        point = debian.decode("utf-8", "replace").strip() if debian else ""
        if point[:1].isdigit():
            version = point
        family = "debian"
    elif family == "alpine" or (not family and alpine):
        if alpine:
            version = alpine.decode("utf-8", "replace").strip() or version
        family = "alpine"
    family = _FAMILIES.get(family, family)
    if not family:
        return None
    return OSInfo(family=family, version=version, name=name)
