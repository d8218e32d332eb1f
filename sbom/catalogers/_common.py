"""Helpers the OS catalogers share."""

from __future__ import annotations

from sbom.interface import OSInfo

__all__ = ["distro_qualifier", "purl_namespace"]

# The purl namespace of families whose packages share a vendor namespace (as Trivy writes it:
# ``pkg:rpm/suse/bash@…?distro=sles-15.3``).
_NAMESPACES = {
    "sles": "suse",
    "sle-micro": "suse",
    "opensuse.leap": "suse",
    "opensuse.tumbleweed": "suse",
}


def purl_namespace(os_info: OSInfo | None, default: str | None) -> str | None:
    """The purl namespace for the OS packages of ``os_info`` (``default`` when unknown)."""
    if os_info is None:
        return default
    return _NAMESPACES.get(os_info.family, os_info.family)


def distro_qualifier(os_info: OSInfo | None, *, bare: bool = False) -> tuple[tuple[str, str], ...]:
    """``(("distro", "debian-12.10"),)`` (``3.19.1`` when ``bare``), or nothing when the OS is
    unknown."""
    if os_info is None or not os_info.version:
        return ()
    return (("distro", os_info.version if bare else f"{os_info.family}-{os_info.version}"),)
