"""Why a layer, and so the SBOM, could not be made. The message always says why."""

from __future__ import annotations

__all__ = ["CorruptLayerError", "LayerError", "LayerLimitError"]


class LayerError(Exception):
    """A layer could not be read: corrupt, hostile beyond repair, or over a limit."""


class CorruptLayerError(LayerError):
    """The layer is not a well-formed compressed tar: bad compression, a tar header whose
    checksum does not match, an impossible size, a malformed pax record, a truncated archive."""


class LayerLimitError(LayerError):
    """The layer or the image is over a limit: decompressed size, bytes or count of the files the
    catalogers asked for, a header record's size, or a decompressor's memory."""
