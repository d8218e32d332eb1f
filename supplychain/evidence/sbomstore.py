"""How SBOM documents are stored: whole, zstd-compressed, with the digest of the document itself."""

from __future__ import annotations

import zstandard

__all__ = ["StoredSbomError", "pack", "unpack"]

ENCODING = "zstd"
MAX_DOCUMENT = 512 * 1024 * 1024
"""A stored SBOM never inflates past this (a guard against a damaged or hostile row)."""


class StoredSbomError(ValueError):
    """A stored SBOM that cannot be read back."""


def pack(document: bytes) -> tuple[bytes, str]:
    """The stored form of ``document`` and its encoding name."""
    return zstandard.ZstdCompressor(level=6).compress(document), ENCODING


def unpack(data: bytes | None, encoding: str | None) -> bytes | None:
    """The document from its stored form (``encoding`` None: stored uncompressed)."""
    if data is None or encoding is None:
        return data
    if encoding != ENCODING:
        raise StoredSbomError(f"unknown SBOM encoding {encoding!r}")
    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_DOCUMENT)
    except zstandard.ZstdError as exc:
        raise StoredSbomError(f"stored SBOM does not decompress: {exc}") from None
