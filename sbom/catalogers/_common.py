"""Helpers the OS catalogers share."""

from __future__ import annotations

from sbom.interface import OSInfo

__all__ = ["distro_qualifier"]


def distro_qualifier(os_info: OSInfo | None) -> tuple[tuple[str, str], ...]:
    """``(("distro", "debian-12.10"),)`` or nothing when the OS is unknown."""
    if os_info is None or not os_info.version:
        return ()
    return (("distro", f"{os_info.family}-{os_info.version}"),)
