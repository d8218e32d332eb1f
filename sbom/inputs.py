"""What an SBOM is made from: the image's layer blobs and what is said about the image.

Kept apart from :mod:`sbom.generate` so that naming an image's layers (:mod:`sbom.local`) does not
import the catalogers: a local layout's layers start inflating while they load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageInfo", "LayerInput"]


@dataclass(frozen=True)
class LayerInput:
    """One layer blob to read."""

    digest: str
    """Layer digest (the cache key: the blob must already be verified against it)."""
    path: Path
    """The blob on disk (gzip, zstd or plain tar)."""
    offset: int = 0
    """Where the blob starts in the file (a layer inside a docker archive)."""
    length: int | None = None
    """The blob's length in the file, when it does not run to the end."""
    verified: bool = True
    """False when the blob was not checked against ``digest`` yet: it then is, while it is read
    (or before its cached result is trusted)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the SBOM says about the image itself."""

    name: str
    """``host/repo`` or a local name."""
    digest: str
    """Manifest digest, ``sha256:…``."""
    tag: str | None = None
    """Tag, when known."""
    repository_url: str | None = None
    """``host/repo`` for the purl's ``repository_url`` qualifier."""
