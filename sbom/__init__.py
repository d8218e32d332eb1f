"""Our own SBOM: layers streamed once, catalogued per layer (cached), merged like an overlay,
written as CycloneDX 1.6 (JSON, XML) or SPDX 2.3 JSON.

>>> result = generate_sbom([LayerInput(digest, path), ...], ImageInfo(name, digest), cache_dir)
>>> document = write_cyclonedx(result)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


_HOME = {
    "write_cyclonedx": "sbom.cyclonedx",
    "write_spdx": "sbom.spdx",
    "CorruptLayerError": "sbom.errors",
    "LayerLimitError": "sbom.errors",
    "ReadLimits": "sbom.spool",
}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (``supplychain`` commands other than ``sbom``
    only need :data:`FORMATS`)."""
    if name in __all__:
        value = getattr(import_module(_HOME.get(name, "sbom.generate")), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sbom' has no attribute {name!r}")


def render(result: SbomResult, fmt: str) -> bytes:
    """``result`` as one of :data:`FORMATS`."""
    from sbom.cyclonedx import write_cyclonedx
    from sbom.spdx import write_spdx

    if fmt == "cyclonedx-json":
        return write_cyclonedx(result)
    if fmt == "cyclonedx-xml":
        return write_cyclonedx(result, xml=True)
    if fmt == "spdx-json":
        return write_spdx(result)
    raise ValueError(f"unknown SBOM format {fmt!r}; choose one of {', '.join(FORMATS)}")
