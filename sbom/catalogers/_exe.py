"""Sections and address mapping of executables: ELF, PE and Mach-O, read here (pyelftools for
ELF files whose tables are of an unusual kind).

Go's ``debug/buildinfo`` and cargo-auditable need only three things from an executable: where
its writable data starts, the bytes at a virtual address, and a section by name. The headers
are small fixed layouts (ELF's program and section header tables; the PE/COFF section table;
Mach-O ``LC_SEGMENT_64`` / ``LC_SEGMENT`` load commands), read here with :mod:`struct`: a
Debian image holds ~400 ELF files, which pyelftools read in ~3 ms each against ~0.1 ms here
(a test compares both on every ELF file of the test image); every count and offset is
checked against the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

__all__ = [
    "ELF_MAGIC",
    "Executable",
    "elf_section_names",
    "elf_tables",
    "is_executable_magic",
    "open_executable",
]

ELF_MAGIC = b"\x7fELF"
_MACHO = {
    b"\xcf\xfa\xed\xfe": ("<", True),
    b"\xce\xfa\xed\xfe": ("<", False),
    b"\xfe\xed\xfa\xcf": (">", True),
    b"\xfe\xed\xfa\xce": (">", False),
}
_LC_SEGMENT, _LC_SEGMENT_64 = 0x1, 0x19
_MAX_SECTIONS = 4096
# PE section characteristics Go's debug/buildinfo looks for: initialised, readable, writable data
_PE_DATA = 0x00000040 | 0x40000000 | 0x80000000
_PE_ALIGN_32 = 0x00600000
_HEADERS = 1 << 20
"""PE and Mach-O headers are read from the first MiB (their tables are small)."""
MAX_SECTION = 64 * 1024 * 1024
"""A section read whole (cargo-auditable's) may be at most this big."""


class _Section(NamedTuple):  # a tuple: an ELF file has dozens, a Debian image ~400 ELF files
    name: str
    address: int  # virtual address
    size: int  # bytes in the file
    offset: int  # file offset
    writable_data: bool = False


@dataclass(frozen=True)
class Executable:
    """An executable's sections (name, address, file extent), format-independent."""

    format: str
    """``elf``, ``pe`` or ``macho``."""
    sections: tuple[_Section, ...]
    """Sections (for Mach-O, segments too, named ``segment:<name>``)."""
    stream: IO[bytes]
    """The file, seekable: read where needed, never whole (binaries may be hundreds of MiB)."""

    def _pread(self, offset: int, size: int) -> bytes:
        self.stream.seek(offset)
        return self.stream.read(size)

    def section(self, name: str) -> bytes | None:
        """The file bytes of the section called ``name``, or None; over MAX_SECTION: an error."""
        for section in self.sections:
            if section.name == name:
                if section.size > MAX_SECTION:
                    raise ValueError(f"section {name} of {section.size} bytes")
                return self._pread(section.offset, section.size)
        return None

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` file bytes at virtual ``address``."""
        for section in self.sections:
            if section.address <= address < section.address + section.size:
                start = section.offset + address - section.address
                end = min(start + size, section.offset + section.size)
                return self._pread(start, end - start)
        raise ValueError(f"address {address:#x} is not in the file")

    def data_start(self) -> int | None:
        """Where Go's linker puts the build info: as debug/buildinfo finds it per format (None:
        no writable data, so no Go executable)."""
        names = {"elf": ".go.buildinfo", "macho": "__go_buildinfo"}
        for section in self.sections:
            if section.name == names.get(self.format):
                return section.address
        for section in self.sections:
            if section.writable_data:
                return section.address
        return None


_ELF_LAYOUTS = {  # ELFCLASS32/64: header fields from e_phoff, program and section headers
    1: ("IIIHHHHHH", 28, "IIIIIIII", "IIIIIIIIII"),
    2: ("QQIHHHHHH", 32, "IIQQQQQQ", "IIQQQQIIQQ"),
}
_PT_LOAD, _SHT_NOBITS, _MAX_SEGMENTS = 1, 8, 4096


class _ElfHeader(NamedTuple):
    wide: bool  # ELFCLASS64
    program: str  # struct format of a program header, byte order first
    section: str  # struct format of a section header
    phoff: int
    phnum: int
    shoff: int
    shnum: int
    shstrndx: int


def _elf_header(head: bytes) -> _ElfHeader | None:
    """The ELF header's table positions; None for what this module leaves to pyelftools
    (extended section numbering, header sizes that are not the standard ones)."""
    if len(head) < 64 or not head.startswith(ELF_MAGIC):
        return None
    layout, order = _ELF_LAYOUTS.get(head[4]), {1: "<", 2: ">"}.get(head[5])
    if layout is None or order is None:
        return None
    fields, at, program, section = layout
    phoff, shoff, _, _, phsize, phnum, shsize, shnum, shstrndx = struct.unpack_from(
        order + fields, head, at
    )
    if (
        (phsize != struct.calcsize(order + program) and phnum)
        or shsize != struct.calcsize(order + section)
        or not 0 < shnum <= _MAX_SECTIONS
        or shstrndx >= shnum
        or phnum > _MAX_SEGMENTS
    ):
        return None
    return _ElfHeader(head[4] == 2, order + program, order + section, phoff, phnum, shoff,
                      shnum, shstrndx)  # fmt: skip


def _read_exactly(stream: IO[bytes], offset: int, size: int) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("truncated ELF header tables")
    return data


def _elf_names(stream: IO[bytes], header: _ElfHeader) -> bytes | None:
    """The section-name string table (None when it is over :data:`_HEADERS` bytes)."""
    size = struct.calcsize(header.section)
    row = struct.unpack(
        header.section, _read_exactly(stream, header.shoff + header.shstrndx * size, size)
    )
    names_at, names_size = row[4:6]  # sh_offset, sh_size
    if names_size > _HEADERS:
        return None
    stream.seek(names_at)
    return stream.read(names_size)


def elf_section_names(stream: IO[bytes]) -> bytes | None:
    """The section-name string table of the ELF file in ``stream``: whether it may have a
    section, at the cost of two small reads. None when it is no ELF file, or one whose tables
    are left to pyelftools or are cut short."""
    stream.seek(0)
    header = _elf_header(stream.read(64))
    try:
        return _elf_names(stream, header) if header is not None else None
    except ValueError:
        return None


def elf_tables(stream: IO[bytes]) -> Executable | None:
    """The load segments and sections of the ELF file in ``stream`` read with :mod:`struct`
    (~0.1 ms a file where pyelftools takes ~3 ms), as pyelftools gives them; None when it is
    no ELF file or one whose tables are left to pyelftools."""
    stream.seek(0)
    header = _elf_header(stream.read(64))
    if header is None or (names := _elf_names(stream, header)) is None:
        return None
    table = _read_exactly(stream, header.shoff, header.shnum * struct.calcsize(header.section))
    row_size = struct.calcsize(header.program)
    programs = _read_exactly(stream, header.phoff, header.phnum * row_size) if header.phnum else b""
    loads = []
    for row in struct.iter_unpack(header.program, programs):
        kind, flags, offset, address, size = (
            (row[0], row[1], row[2], row[3], row[5])
            if header.wide
            else (row[0], row[6], row[1], row[2], row[4])
        )
        if kind == _PT_LOAD:
            loads.append(_Section("segment:load", address, size, offset, flags & 0x3 == 0x2))
    named = []
    for name_at, kind, _, address, offset, size, *_ in struct.iter_unpack(header.section, table):
        if kind != _SHT_NOBITS:
            end = names.find(b"\0", name_at)
            name = names[name_at : end if end >= 0 else len(names)].decode("utf-8", "replace")
            named.append(_Section(name, address, size, offset))
    return Executable("elf", tuple(loads + named), stream)


def _elf(stream: IO[bytes]) -> Executable:
    found = elf_tables(stream)
    return found if found is not None else _elf_pyelftools(stream)


def _elf_pyelftools(stream: IO[bytes]) -> Executable:
    from elftools.elf.elffile import ELFFile  # ~0.1 s to import: only once an ELF file is seen

    elf: Any = ELFFile(stream)
    sections = []
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_LOAD":
            flags = int(segment["p_flags"])
            sections.append(
                _Section(
                    "segment:load",
                    int(segment["p_vaddr"]),
                    int(segment["p_filesz"]),
                    int(segment["p_offset"]),
                    writable_data=flags & 0x3 == 0x2,  # PF_W without PF_X
                )
            )
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOBITS":
            sections.append(
                _Section(
                    section.name,
                    int(section["sh_addr"]),
                    int(section["sh_size"]),
                    int(section["sh_offset"]),
                )
            )
    # sections first for names, load segments first for addresses: order the address map
    named = [s for s in sections if s.name != "segment:load"]
    loads = [s for s in sections if s.name == "segment:load"]
    return Executable("elf", tuple(loads + named), stream)


def _pe(data: bytes, stream: IO[bytes]) -> Executable:
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe_offset : pe_offset + 4] != b"PE\0\0":
        raise ValueError("not a PE file")
    count, _, _, _, optional_size = struct.unpack_from("<HIIIH", data, pe_offset + 6)
    optional = pe_offset + 24
    magic = struct.unpack_from("<H", data, optional)[0]
    if magic == 0x20B:  # PE32+
        (image_base,) = struct.unpack_from("<Q", data, optional + 24)
    elif magic == 0x10B:
        (image_base,) = struct.unpack_from("<I", data, optional + 28)
    else:
        raise ValueError(f"unknown PE optional header {magic:#x}")
    if count > _MAX_SECTIONS:
        raise ValueError("too many PE sections")
    table = optional + optional_size
    sections = []
    for index in range(count):
        raw_name, virtual_size, address, raw_size, raw_offset = struct.unpack_from(
            "<8sIIII", data, table + 40 * index
        )
        (flags,) = struct.unpack_from("<I", data, table + 40 * index + 36)
        sections.append(
            _Section(
                raw_name.rstrip(b"\0").decode("latin-1"),
                image_base + address,
                min(virtual_size or raw_size, raw_size),
                raw_offset,
                writable_data=bool(address and raw_size and flags & ~_PE_ALIGN_32 == _PE_DATA),
            )
        )
    return Executable("pe", tuple(sections), stream)


def _macho(data: bytes, stream: IO[bytes]) -> Executable:
    order, wide = _MACHO[data[:4]]
    ncmds = struct.unpack_from(order + "I", data, 16)[0]
    position = 32 if wide else 28
    if ncmds > _MAX_SECTIONS:
        raise ValueError("too many Mach-O load commands")
    sections: list[_Section] = []
    for _ in range(ncmds):
        command, size = struct.unpack_from(order + "II", data, position)
        if size < 8 or position + size > len(data):
            raise ValueError("corrupt Mach-O load command")
        if command in (_LC_SEGMENT, _LC_SEGMENT_64):
            wide_segment = command == _LC_SEGMENT_64
            head = "16s4Q4I" if wide_segment else "16s4I4I"
            name, address, _vmsize, offset, filesize, _, _, nsects, _ = struct.unpack_from(
                order + head, data, position + 8
            )
            segment = name.rstrip(b"\0").decode("latin-1")
            sections.append(_Section(f"segment:{segment}", address, filesize, offset))
            first = position + 8 + struct.calcsize(head)
            for index in range(min(nsects, _MAX_SECTIONS)):
                entry = first + index * (80 if wide_segment else 68)
                fields = "16s16sQQI" if wide_segment else "16s16sIII"
                sect, _seg, s_address, s_size, s_offset = struct.unpack_from(
                    order + fields, data, entry
                )
                sections.append(
                    _Section(
                        sect.rstrip(b"\0").decode("latin-1"),
                        s_address,
                        s_size,
                        s_offset,
                        writable_data=segment == "__DATA" and index == 0,
                    )
                )
        position += size
    return Executable("macho", tuple(sections), stream)


def is_executable_magic(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like an ELF, PE or Mach-O file: the cheap
    test before anything else is read (scripts, the other third of ``bin/``, stop here)."""
    return head.startswith((ELF_MAGIC, b"MZ")) or head[:4] in _MACHO


def open_executable(stream: IO[bytes]) -> Executable | None:
    """The executable in ``stream`` (ELF, PE or Mach-O; seekable, kept open by the caller),
    or None when it is none of them."""
    stream.seek(0)
    data = stream.read(_HEADERS)  # the headers only
    try:
        if data.startswith(ELF_MAGIC):
            return _elf(stream)
        if data.startswith(b"MZ") and len(data) > 0x40:
            return _pe(data, stream)
        if data[:4] in _MACHO:
            return _macho(data, stream)
    except struct.error as exc:
        raise ValueError(f"truncated executable: {exc}") from None
    return None
