"""Rust: binaries built with cargo-auditable, and ``Cargo.lock`` files.

cargo-auditable (rust-secure-code/cargo-auditable) stores the dependency tree as
zlib-compressed JSON in the ELF section ``.dep-v0``: ``{"packages": [{"name", "version",
"source", "kind" ("runtime" by default, or "build"), "root", "dependencies": [index…]}]}``.
Like Trivy's ``rustbinary`` analyzer (go-rustaudit) we report the runtime packages, root
included, and drop build-only ones.

Trivy 0.76 also reads ``Cargo.lock`` when scanning a root filesystem or image (every
``[[package]]``, the workspace's own crates included), so this module does too.
"""

from __future__ import annotations

import json
import logging
import tomllib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from sbom.catalogers.golang import ElfCataloger, each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register

__all__ = ["CargoAuditableCataloger", "CargoLockCataloger", "parse_audit_json"]

log = logging.getLogger(__name__)

MAX_AUDIT_JSON = 8 * 1024 * 1024
"""Decompressed ``.dep-v0`` cap: real trees are a few hundred KiB (zlib bombs stop here)."""
MAX_PACKAGES = 100_000


def _cargo(name: str, version: str, **extra: Any) -> Package:
    return Package(type="cargo", name=name, version=version, **extra)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def parse_audit_json(document: object) -> list[Package]:
    """Runtime packages from cargo-auditable's ``VersionInfo`` JSON."""
    if not isinstance(document, dict) or not isinstance(document.get("packages"), list):
        raise ValueError("no 'packages' list")
    entries = document["packages"][:MAX_PACKAGES]
    packages = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind", "runtime") != "runtime":
            continue
        root = entry.get("root") is True
        props = [("cargo:source", str(entry.get("source", "")))]
        if root:
            props.append(("cargo:root", "true"))
        packages.append(
            _cargo(_str(entry.get("name")), _str(entry.get("version")), properties=tuple(props))
        )
    return packages


def decompress_capped(blob: bytes, limit: int) -> bytes:
    """zlib-inflate at most ``limit`` bytes; more is an error (never unbounded memory)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(blob, limit + 1)
    if len(out) > limit:
        raise ValueError(f"decompressed data exceeds {limit} bytes")
    return out


@register
class CargoAuditableCataloger(ElfCataloger):
    """Crates recorded by cargo-auditable in Rust executables."""

    name = "rustbinary"
    version = 1
    kind = "cargo-auditable binary"
    marker = b".dep-v0\0"  # the section name in the section header string table

    def parse_elf(self, elf: Any, entry: FileEntry) -> list[Package]:
        """Packages from ``.dep-v0``; ``[]`` for other ELF files."""
        section = elf.get_section_by_name(".dep-v0")
        if section is None:
            return []
        if int(section["sh_size"]) > MAX_AUDIT_JSON:  # never read a hostile size into memory
            raise ValueError(f".dep-v0 section of {section['sh_size']} bytes")
        raw = decompress_capped(bytes(section.data()), MAX_AUDIT_JSON)
        return parse_audit_json(json.loads(raw))


def parse_cargo_lock(text: str) -> list[Package]:
    """Every ``[[package]]`` of a ``Cargo.lock``."""
    document = tomllib.loads(text)
    packages = []
    for entry in document.get("package", [])[:MAX_PACKAGES]:
        if not isinstance(entry, dict):
            continue
        source = entry.get("source", "")
        packages.append(
            _cargo(
                _str(entry.get("name")),
                _str(entry.get("version")),
                properties=(("cargo:source", str(source)),) if source else (),
            )
        )
    return packages


@register
class CargoLockCataloger(LayerCataloger):
    """Crates pinned by ``Cargo.lock`` files."""

    name = "cargo-lock"
    version = 1
    max_size = 16 * 1024 * 1024

    def wants(self, path: str) -> bool:
        """Files named ``Cargo.lock``."""
        return path.rsplit("/", 1)[-1] == "Cargo.lock"

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per ``Cargo.lock``."""
        return each_file(files, lambda f: parse_cargo_lock(f.data.decode("utf-8")), "Cargo.lock")
