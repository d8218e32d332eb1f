"""Go binaries: the module build info the Go linker embeds (``runtime/debug.BuildInfo``).

Matches Trivy's ``gobinary`` analyzer (pkg/dependency/parser/golang/binary, which wraps Go's
``debug/buildinfo``): one package per dependency module (a ``=>`` replacement wins over the
module it replaces), the main module (only when a ``mod`` line names it: Go's own tools carry
just a ``path``), and ``stdlib`` at the Go version the binary was built
with (``v``-prefixed, as Trivy writes it). ``(devel)`` versions become empty; for the main
module the version then falls back to a semver set with ``-ldflags -X ….version=``.

Both build-info layouts are read: Go >= 1.18 stores the version and module strings inline
(varint length-prefixed), older linkers store pointers to Go string headers that must be
mapped through the executable's address map. ELF, PE and Mach-O executables are read (see
:mod:`._exe`): Linux images carry Windows and macOS binaries too (release archives, tools).

Candidate files (shared with the Rust cataloger through :class:`ElfCataloger`): Trivy opens
every file with an execute bit. The reader calls ``wants(path)`` without the mode, and what a
cataloger wants is buffered in memory, so :meth:`ElfCataloger.wants` takes dot-less names
(and ``*.exe``) outside data trees, and :meth:`ElfCataloger.catalog` then drops anything
without an execute bit or an executable's magic before parsing. When the reader passes ``mode``
the check is exact.
"""

from __future__ import annotations

import json
import logging
import re
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, Literal

from sbom.catalogers._exe import Executable, is_executable_magic, open_executable
from sbom.interface import FileEntry, LayerCataloger, OSInfo, Package, register, warn

__all__ = ["ElfCataloger", "GoBinaryCataloger", "each_file", "parse_build_info"]

log = logging.getLogger(__name__)

_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_HEADER_SIZE = 32
_ALIGN = 16
_SEARCH_WINDOW = 64 * 1024  # what debug/buildinfo scans from the data start
_CHUNK = 1 << 20
_MAX_STRING = 1 << 24  # a modinfo string bigger than 16 MiB is not a real build info
_FLAG_BIG_ENDIAN = 0x1
_FLAG_INLINE = 0x2

# Trees that hold no executables worth opening when the mode is unknown (see wants()).
_SKIP_DIRS = (
    "usr/share/",
    "usr/include/",
    "usr/lib/python3",
    "usr/local/lib/python3",
    "var/lib/",
    "var/cache/",
    "var/log/",
    "etc/",
)
_VIRTUAL_DIRS = ("proc/", "sys/", "dev/")


def each_file(
    files: Sequence[FileEntry],
    parse: Callable[[FileEntry], list[Package]],
    kind: str,
) -> dict[str, list[Package]]:
    """Run ``parse`` on every file and set each package's ``path``; a file that fails yields
    ``[]`` and a warning, never a raise.

    ``kind`` names the format in the warning. Any exception from one file is contained (the
    parsers raise ``ValueError`` for bad input, but decoders of untrusted binaries, JSON and
    TOML can raise others, e.g. ``RecursionError`` on deeply nested documents).
    """
    found: dict[str, list[Package]] = {}
    for entry in files:
        try:
            found[entry.path] = [replace(pkg, path=entry.path) for pkg in parse(entry)]
        except Exception as exc:
            warn(entry.path, f"skipped: not a readable {kind}: {exc}")
            found[entry.path] = []
    return found


def is_executable(mode: int) -> bool:
    """Trivy's rule: any of the three execute bits."""
    return bool(mode & 0o111)


class ElfCataloger(LayerCataloger):
    """Base for catalogers that read executables: cheap path filter, then mode + ELF magic."""

    max_size = 256 * 1024 * 1024
    kind = "ELF binary"
    marker = b""
    """Bytes every file of interest contains: files without them are not parsed at all."""

    extensions = frozenset({"", "exe"})

    def wants(self, path: str, mode: int | None = None) -> bool:
        """Files that may be executables; exact when the reader passes the entry's ``mode``.

        With ``mode``: any executable file (Trivy's rule). Without it (the current reader):
        files whose name has no dot outside :data:`_SKIP_DIRS`, since that is how executables
        are named, while the library, data and script files that would otherwise be buffered
        all carry a suffix. :meth:`catalog` re-checks the mode and the ELF magic either way.
        """
        if path.startswith(_VIRTUAL_DIRS):
            return False
        if mode is not None:
            return is_executable(mode)
        base = path.rsplit("/", 1)[-1]
        named = "." not in base or base.lower().endswith(".exe")
        return named and not path.startswith(_SKIP_DIRS)

    def per_file(self, path: str) -> bool:
        """Each executable on its own, as it is read."""
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        """Packages of every executable ELF file; other files map to ``[]``."""
        return each_file(files, self._parse_entry, self.kind)

    def _parse_entry(self, entry: FileEntry) -> list[Package]:
        if not is_executable(entry.mode):
            return []
        with entry.open() as stream:  # streamed: a binary may be hundreds of MiB
            if not self.may_hold(entry, stream):
                return []
            executable = open_executable(stream)
            if executable is None:
                return []
            return self.parse_executable(executable, entry)

    def may_hold(self, entry: FileEntry, stream: IO[bytes]) -> bool:
        """Cheap checks before parsing: an executable's magic and :attr:`marker` in the file (a
        file held in memory is searched in place, not copied chunk by chunk; scripts stop at the
        magic)."""
        if isinstance(entry.source, bytes):
            return is_executable_magic(entry.source) and self.marker in entry.source
        stream.seek(0)
        return is_executable_magic(stream.read(4)) and _contains(stream, self.marker)

    @abstractmethod
    def parse_executable(self, executable: Executable, entry: FileEntry) -> list[Package]:
        """Packages from one parsed executable (ELF, PE or Mach-O)."""


# --- build info extraction ------------------------------------------------------------------


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("bad varint")


def _inline_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _uvarint(buf, pos)
    if length > _MAX_STRING or pos + length > len(buf):
        raise ValueError("inline string out of bounds")
    return buf[pos : pos + length], pos + length


def raw_build_info(exe: Executable) -> tuple[str, str] | None:
    """``(go version, modinfo text)`` of a Go executable, or None when it is not one."""
    start = exe.data_start()
    if start is None:
        return None
    window = exe.read(start, _SEARCH_WINDOW)
    pos = 0
    while True:
        i = window.find(_BUILDINFO_MAGIC, pos)
        if i < 0 or len(window) - i < _HEADER_SIZE:
            return None
        if i % _ALIGN == 0:
            break
        pos = (i + _ALIGN - 1) & ~(_ALIGN - 1)
    header = window[i:]
    ptr_size, flags = header[14], header[15]
    if flags & _FLAG_INLINE:
        version_b, rest = _inline_string(header, _HEADER_SIZE)
        mod_b, _ = _inline_string(header, rest)
    else:
        if ptr_size not in (4, 8):
            raise ValueError(f"bad pointer size {ptr_size}")
        order: Literal["big", "little"] = "big" if flags & _FLAG_BIG_ENDIAN else "little"

        def ptr(buf: bytes, at: int = 0) -> int:
            if len(buf) < at + ptr_size:
                raise ValueError("truncated pointer")
            return int.from_bytes(buf[at : at + ptr_size], order)

        def go_string(addr: int) -> bytes:
            hdr = exe.read(addr, 2 * ptr_size)
            length = ptr(hdr, ptr_size)
            if length > _MAX_STRING:
                raise ValueError("string too long")
            out = exe.read(ptr(hdr), length)
            if len(out) != length:
                raise ValueError("truncated string")
            return out

        version_b = go_string(ptr(header, 16))
        mod_b = go_string(ptr(header, 16 + ptr_size))
    if not version_b:
        return None
    # modinfo is wrapped in two 16-byte sentinels (runtime/debug modinfo start/end markers).
    if len(mod_b) >= 33 and mod_b[-17] == ord("\n"):
        mod_b = mod_b[16:-16]
    else:
        mod_b = b""
    return version_b.decode("utf-8", "replace"), mod_b.decode("utf-8", "replace")


# --- modinfo -> packages ---------------------------------------------------------------------

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?$"
)
_DEFAULT_PREFIXES = ("main", "common", "version", "cmd")


def _ldflags_version(main_path: str, ldflags: str) -> str:
    """Trivy's ``ParseLDFlags``: a semver set with ``-X <pkg>.version=`` (or ``.ver``)."""
    import shlex  # for Go binaries only

    try:
        words = shlex.split(ldflags)
    except ValueError:
        return ""
    assignments: list[str] = []
    for idx, word in enumerate(words):
        if word == "-X" and idx + 1 < len(words):
            assignments.append(words[idx + 1])
        elif word.startswith(("-X=", "--X=")):
            assignments.append(word.split("=", 1)[1])
    found: list[list[str]] = [[], [], []]
    for assignment in dict.fromkeys(assignments):
        key, sep, value = assignment.strip("'").partition("=")
        value = value.rstrip("'")
        if not sep or not key.lower().endswith((".version", ".ver")) or not _SEMVER.match(value):
            continue
        prefix = key.rsplit("/", 1)[-1].split(".", 1)[0].lower()
        if key.startswith(main_path + "/cmd/"):
            found[0].append(value)
        elif prefix in _DEFAULT_PREFIXES:
            found[1].append(value)
        else:
            found[2].append(value)
    for versions in found:
        if versions:
            return versions[0] if len(versions) == 1 else ""
    return ""


def _unquote(value: str) -> str:
    """Go quotes build setting values that need it (strconv.Quote; JSON-compatible here)."""
    if value.startswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value.strip('"')
    return value


def _golang(path: str, version: str, **extra: Any) -> Package:
    namespace, _, name = path.rpartition("/")
    return Package(type="golang", namespace=namespace or None, name=name, version=version, **extra)


def parse_build_info(go_version: str, modinfo: str) -> list[Package]:
    """Packages from a Go version string and ``runtime/debug`` modinfo text."""
    stdlib = "v" + go_version.removeprefix("go").split(" ", 1)[0]
    main_path = main_version = ldflags = ""
    deps: list[tuple[str, str]] = []
    for line in modinfo.splitlines():
        fields = line.split("\t")
        match fields:
            case ["mod", p, v, *_]:
                main_path, main_version = p, v
            case ["dep", p, v, *_] if p:
                deps.append((p, v))
            case ["dep", p] if p:
                deps.append((p, ""))
            case ["=>", p, v, *_] if deps:
                deps[-1] = (p, v)
            case ["build", setting] if setting.startswith("-ldflags="):
                ldflags = _unquote(setting.removeprefix("-ldflags="))
    packages = [_golang("stdlib", stdlib, properties=(("go:toolchain", go_version),))]
    # a replacement by a local directory (``=> ./greet``) names no module: not a package (Trivy
    # lists it without a purl)
    local = ("./", "../", "/")
    packages += [
        _golang(p, "" if v == "(devel)" else v) for p, v in deps if not p.startswith(local)
    ]
    if main_path:
        version = "" if main_version == "(devel)" else main_version
        from_flags = _ldflags_version(main_path, ldflags)
        if not version or (version.startswith("v0.0.0") and from_flags):
            version = from_flags
        packages.append(_golang(main_path, version, properties=(("go:main_module", "true"),)))
    return packages


@register
class GoBinaryCataloger(ElfCataloger):
    """Modules compiled into Go executables."""

    name = "gobinary"
    version = 2
    kind = "Go binary"
    marker = _BUILDINFO_MAGIC

    def parse_executable(self, executable: Executable, entry: FileEntry) -> list[Package]:
        """Build info packages, or ``[]`` for an executable the Go linker did not write."""
        info = raw_build_info(executable)
        if info is None:
            return []
        return parse_build_info(*info)


def _contains(stream: IO[bytes], marker: bytes) -> bool:
    """True when ``marker`` occurs in ``stream`` (read from the start in 1 MiB chunks)."""
    stream.seek(0)
    tail = b""
    while chunk := stream.read(_CHUNK):
        if marker in tail + chunk:
            return True
        tail = chunk[-len(marker) :]
    return False
