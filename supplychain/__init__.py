"""supplychain: secures the path of container images from registry to deploy.

The public API is small: settings, the pipeline's interfaces and values, and the service builder.
Everything else is internal and may change.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supplychain.config import ConfigError, Settings, load_settings
    from supplychain.interface import (
        Cataloger,
        Evidence,
        Finding,
        ImageSource,
        ImageTarget,
        Policy,
        PulledImage,
        Sbom,
        Scanner,
        ScanResult,
        SignatureEvidence,
        Verdict,
        Verifier,
    )
    from supplychain.reference import ImageReference, parse_reference

_HOME = {
    **dict.fromkeys(("ConfigError", "Settings", "load_settings"), "supplychain.config"),
    **dict.fromkeys(("ImageReference", "parse_reference"), "supplychain.reference"),
}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: ``supplychain <command>`` starts faster when
    it does not need them (the reference grammar alone pulls in every webhook adapter)."""
    if name in __all__ and name != "__version__":
        value = getattr(import_module(_HOME.get(name, "supplychain.interface")), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'supplychain' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Cataloger",
    "ConfigError",
    "Evidence",
    "Finding",
    "ImageReference",
    "ImageSource",
    "ImageTarget",
    "Policy",
    "PulledImage",
    "Sbom",
    "ScanResult",
    "Scanner",
    "Settings",
    "SignatureEvidence",
    "Verdict",
    "Verifier",
    "__version__",
    "load_settings",
    "parse_reference",
]
