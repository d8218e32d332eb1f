"""ELF tables read with struct (``sbom.catalogers._exe.elf_tables``) exactly as pyelftools reads
them: on every ELF file of the test image, on Go binaries of four architectures (32 and 64 bits,
little and big endian, cross-compiled here), on a Rust binary with a section added by objcopy,
and on Go's old build-info layout; unusual tables are left to pyelftools."""

from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

import pytest

from sbom.catalogers._exe import ELF_MAGIC, _elf_pyelftools, elf_tables, open_executable
from sbom.catalogers.golang import GoBinaryCataloger
from sbom.interface import FileEntry
from sbom.local import oci_layout
from tests.support.images import app_layout
from tests.test_sbom_catalogers_lang import (
    AUDIT,
    build_go,
    build_rust,
    old_format_go_elf,
)


def same_as_pyelftools(data: bytes) -> bool:
    ours = elf_tables(io.BytesIO(data))
    assert ours is not None, "left to pyelftools"
    theirs = _elf_pyelftools(io.BytesIO(data))
    return ours.sections == theirs.sections


def test_every_elf_file_of_the_test_image() -> None:
    layers, _ = oci_layout(app_layout(), "app")
    checked = 0
    for layer in layers:
        with tarfile.open(layer.path, "r|*") as tar:
            for member in tar:
                if not member.isreg() or not member.mode & 0o111:
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if data.startswith(ELF_MAGIC):
                    assert same_as_pyelftools(data), member.name
                    checked += 1
    assert checked > 300  # bookworm's executables


@pytest.mark.parametrize("goarch", ["386", "mips", "s390x", "arm64"])
def test_go_binaries_of_other_architectures(tmp_path: Path, goarch: str) -> None:
    binary = build_go(tmp_path, "linux", goarch).read_bytes()
    assert binary[4] == (1 if goarch in ("386", "mips") else 2)  # ELFCLASS32 / 64
    assert binary[5] == (2 if goarch in ("mips", "s390x") else 1)  # big / little endian
    assert same_as_pyelftools(binary)
    found = GoBinaryCataloger().catalog([FileEntry("app/hello", binary, 0o755)], None)
    purls = {p.purl() for p in found["app/hello"]}
    assert {"pkg:golang/example.com/greet@v1.2.3", "pkg:golang/example.com/Hello@1.4.0"} <= purls


def test_a_section_added_by_objcopy_and_the_old_go_layout(tmp_path: Path) -> None:
    import json
    import zlib

    rust = build_rust(tmp_path, zlib.compress(json.dumps(AUDIT).encode()), "rhello")
    assert same_as_pyelftools(rust.read_bytes())
    executable = elf_tables(io.BytesIO(rust.read_bytes()))
    assert executable is not None and executable.section(".dep-v0") is not None
    assert same_as_pyelftools(old_format_go_elf())


def test_unusual_tables_are_left_to_pyelftools(tmp_path: Path) -> None:
    """Extended section numbering (e_shnum 0) and a section header size that is not the
    standard one: None here, read by pyelftools through open_executable."""
    binary = bytearray(build_go(tmp_path).read_bytes())
    (shnum,) = struct.unpack_from("<H", binary, 60)
    renumbered = bytearray(binary)
    struct.pack_into("<H", renumbered, 60, 0)  # e_shnum 0: the count would be in section 0
    struct.pack_into("<Q", renumbered, struct.unpack_from("<Q", binary, 40)[0] + 32, shnum)
    assert elf_tables(io.BytesIO(bytes(renumbered))) is None
    executable = open_executable(io.BytesIO(bytes(renumbered)))
    assert executable is not None and any(s.name == ".go.buildinfo" for s in executable.sections)
    odd = bytearray(binary)
    struct.pack_into("<H", odd, 58, 72)  # e_shentsize
    assert elf_tables(io.BytesIO(bytes(odd))) is None
