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
    "prepare_render",
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
    "ImageInfo": "sbom.inputs",
    "LayerInput": "sbom.inputs",
    "LayerError": "sbom.errors",
}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (``supplychain`` commands other than ``sbom``
    only need :data:`FORMATS`)."""
    if name in __all__:
        value = getattr(import_module(_HOME.get(name, "sbom.generate")), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sbom' has no attribute {name!r}")


def _writer(fmt: str) -> Any:
    if fmt not in FORMATS:
        raise ValueError(f"unknown SBOM format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return import_module("sbom.spdx" if fmt == "spdx-json" else "sbom.cyclonedx")


def prepare_render(fmt: str) -> None:
    """Load what :func:`render` needs for ``fmt`` (the writer's modules, our installed version:
    ~0.02 s once per process), e.g. while the layers are being read."""
    _writer(fmt).tool_version()


def render(result: SbomResult, fmt: str) -> bytes:
    """``result`` as one of :data:`FORMATS`."""
    writer = _writer(fmt)
    document: bytes
    if fmt == "spdx-json":
        document = writer.write_spdx(result)
    else:
        document = writer.write_cyclonedx(result, xml=fmt == "cyclonedx-xml")
    return document
