"""supplychain: secures the path of container images from registry to deploy.

The public API is small: settings, the pipeline's interfaces and values, and the service builder.
Everything else is internal and may change.
"""

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
