"""Our own SBOM: layers streamed once, catalogued per layer (cached), merged like an overlay,
written as CycloneDX 1.6 (JSON, XML) or SPDX 2.3 JSON.

>>> result = generate_sbom([LayerInput(digest, path), ...], ImageInfo(name, digest), cache_dir)
>>> document = write_cyclonedx(result)
"""

from __future__ import annotations

from sbom.cyclonedx import write_cyclonedx
from sbom.errors import CorruptLayerError, LayerLimitError
from sbom.generate import ImageInfo, LayerError, LayerInput, SbomResult, generate_sbom
from sbom.spdx import write_spdx
from sbom.spool import ReadLimits

__all__ = [
    "FORMATS",
    "CorruptLayerError",
    "ImageInfo",
    "LayerError",
    "LayerInput",
    "LayerLimitError",
    "ReadLimits",
    "SbomResult",
    "generate_sbom",
    "render",
    "write_cyclonedx",
    "write_spdx",
]

FORMATS = ("cyclonedx-json", "cyclonedx-xml", "spdx-json")
"""Output formats :func:`render` knows."""


def render(result: SbomResult, fmt: str) -> bytes:
    """``result`` as one of :data:`FORMATS`."""
    if fmt == "cyclonedx-json":
        return write_cyclonedx(result)
    if fmt == "cyclonedx-xml":
        return write_cyclonedx(result, xml=True)
    if fmt == "spdx-json":
        return write_spdx(result)
    raise ValueError(f"unknown SBOM format {fmt!r}; choose one of {', '.join(FORMATS)}")
