"""Rust: binaries built with cargo-auditable, and ``Cargo.lock`` files.

cargo-auditable (rust-secure-code/cargo-auditable) stores the dependency tree as
zlib-compressed JSON in the ELF section ``.dep-v0``: ``{"packages": [{"name", "version",
"source", "kind" ("runtime" by default, or "build"), "root", "dependencies": [index…]}]}``.
Like Trivy's ``rustbinary`` analyzer (go-rustaudit) we report the runtime packages, root
included, and drop build-only ones.

Trivy 0.76 also reads ``Cargo.lock`` when scanning a root filesystem or image, so this module
does too: every ``[[package]]`` when the lock file is alone, and, when a ``Cargo.toml`` sits
beside it in the same layer, only the root and workspace-member crates and what their normal
(not dev- or build-only) dependencies reach through the lock file's dependency lists, as
Trivy's cargo analyzer prunes them.
"""

from __future__ import annotations

import json
import logging
import posixpath
import zlib
from collections.abc import Mapping, Sequence
from typing import IO, Any

from sbom.catalogers._exe import Executable, elf_section_names
from sbom.catalogers.golang import ElfCataloger, each_file
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn

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
    version = 2
    kind = "cargo-auditable binary"
    marker = b".dep-v0"  # the section's name (ELF string table, PE/Mach-O section header)

    def may_hold(self, entry: FileEntry, stream: IO[bytes]) -> bool:
        """An ELF file names its sections in one small table: ``.dep-v0`` is looked for there
        (the marker searched through every executable of a Debian image took ~20 ms)."""
        names = elf_section_names(stream)
        if names is not None:
            return b".dep-v0\0" in names
        return super().may_hold(entry, stream)

    def parse_executable(self, executable: Executable, entry: FileEntry) -> list[Package]:
        """Packages from ``.dep-v0``; ``[]`` for other executables."""
        section = executable.section(".dep-v0")
        if section is None:
            return []
        raw = decompress_capped(section, MAX_AUDIT_JSON)
        return parse_audit_json(json.loads(raw))


def parse_cargo_lock(text: str) -> list[Package]:
    """Every ``[[package]]`` of a ``Cargo.lock`` (its ``dependencies`` as ``depends``)."""
    import tomllib  # imported for the first Cargo file only

    document = tomllib.loads(text)
    entries = document.get("package", [])
    if not isinstance(entries, list):
        raise ValueError("'package' is not an array of tables")
    packages = []
    for entry in entries[:MAX_PACKAGES]:
        if not isinstance(entry, dict):
            continue
        source = entry.get("source", "")
        deps = entry.get("dependencies", [])
        packages.append(
            _cargo(
                _str(entry.get("name")),
                _str(entry.get("version")),
                properties=(("cargo:source", str(source)),) if source else (),
                depends=tuple(d for d in deps if isinstance(d, str))
                if isinstance(deps, list)
                else (),
            )
        )
    return packages


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _manifest_deps(manifest: dict[str, Any]) -> dict[str, str]:
    """Crate name → version requirement of a ``Cargo.toml``'s normal dependencies (plain,
    per-target and workspace ones; dev- and build-dependencies are what pruning drops)."""
    tables = [_table(manifest.get("dependencies"))]
    tables += [
        _table(_table(t).get("dependencies")) for t in _table(manifest.get("target")).values()
    ]
    tables.append(_table(_table(manifest.get("workspace")).get("dependencies")))
    found: dict[str, str] = {}
    for table in tables:
        for key, spec in table.items():
            if isinstance(spec, dict):
                name, requirement = str(spec.get("package", key)), spec.get("version", "")
            else:
                name, requirement = key, spec
            found[name] = requirement if isinstance(requirement, str) else ""
    return found


def _matches(version: str, requirement: str) -> bool:
    """Cargo's default (caret) requirement, which is what a bare ``"1.2"`` means; any other
    operator is accepted as matching (the lock file already resolved it)."""
    requirement = requirement.strip().removeprefix("^")
    if not requirement or requirement[0] in "<>=~*" or "," in requirement:
        return True
    want = [int(p) for p in requirement.split(".") if p.isdigit()]
    have = [int(p) for p in version.split("-")[0].split(".") if p.isdigit()]
    if not want or len(have) < 3:
        return True
    significant = next((i for i, part in enumerate(want) if part), len(want) - 1)
    return have[: significant + 1] == want[: significant + 1] and have >= want


def prune(packages: list[Package], manifests: list[dict[str, Any]]) -> list[Package]:
    """What Trivy keeps of a lock file next to its ``Cargo.toml`` (and the workspace members'):
    the root and member crates and everything their normal dependencies reach."""
    by_name: dict[str, list[Package]] = {}
    for package in packages:
        by_name.setdefault(package.name, []).append(package)
    keep: dict[int, Package] = {}
    todo: list[Package] = []
    for manifest in manifests:
        # the crate itself is kept, but not walked: its lock entry lists dev-dependencies too
        own = _table(manifest.get("package")).get("name")
        keep.update((id(p), p) for p in by_name.get(str(own), []) if not p.properties)
        for name, requirement in _manifest_deps(manifest).items():
            candidates = by_name.get(name, [])
            todo += [p for p in candidates if _matches(p.version, requirement)][:1] or candidates
    walked: set[int] = set()
    while todo:
        package = todo.pop()
        if id(package) in walked:
            continue
        walked.add(id(package))
        keep[id(package)] = package
        for dependency in package.depends:
            name, _, version = dependency.partition(" ")
            version = version.split(" ", 1)[0]
            todo += [p for p in by_name.get(name, []) if not version or p.version == version]
    return [p for p in packages if id(p) in keep]


@register
class CargoLockCataloger(LayerCataloger):
    """Crates pinned by ``Cargo.lock`` files, pruned by the ``Cargo.toml`` beside them."""

    name = "cargo-lock"
    version = 2
    max_size = 16 * 1024 * 1024

    extensions = frozenset({"lock", "toml"})

    def wants(self, path: str) -> bool:
        """Files named ``Cargo.lock`` or ``Cargo.toml``."""
        return path.rsplit("/", 1)[-1] in ("Cargo.lock", "Cargo.toml")

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages per ``Cargo.lock``; the manifests give none of their own."""
        import tomllib

        manifests: dict[str, dict[str, Any]] = {}
        for entry in files:
            if entry.path.endswith("Cargo.toml"):
                try:
                    manifests[posixpath.dirname(entry.path)] = tomllib.loads(entry.data.decode())
                except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
                    warn(entry.path, f"skipped: not a readable Cargo.toml: {exc}")

        def parse(entry: FileEntry) -> list[Package]:
            packages = parse_cargo_lock(entry.data.decode("utf-8"))
            directory = posixpath.dirname(entry.path)
            if directory not in manifests:
                return packages  # no manifest: every package, as Trivy
            root = manifests[directory]
            members = _table(root.get("workspace")).get("members") or []
            extra = [
                manifests[posixpath.normpath(posixpath.join(directory, str(member)))]
                for member in members
                if posixpath.normpath(posixpath.join(directory, str(member))) in manifests
            ]
            return prune(packages, [root, *extra])

        locks = [f for f in files if f.path.endswith("Cargo.lock")]
        found = each_file(locks, parse, "Cargo.lock")
        found.update({f.path: [] for f in files if f.path.endswith("Cargo.toml")})
        return found
