"""The pipeline's cataloger stage with our own SBOM (:mod:`sbom`) instead of Trivy's.

The layers of a :class:`~supplychain.interface.PulledImage` are already verified against their
digests by the source, so the per-layer cache can be keyed by those digests.
"""

from __future__ import annotations

from pathlib import Path

from sbom import ImageInfo, LayerError, LayerInput, generate_sbom, write_cyclonedx
from sbom.cyclonedx import TOOL_NAME, tool_version
from sbom.generate import SbomResult
from supplychain.interface import Cataloger, CatalogError, Component, PulledImage, Sbom

__all__ = ["OwnCataloger", "components_of", "image_info"]


def image_info(image: PulledImage) -> ImageInfo:
    """What the SBOM says about ``image``."""
    target = image.target
    name = f"{target.registry}/{target.repository}"
    return ImageInfo(name=name, digest=target.digest, tag=target.tag, repository_url=name)


OS_TYPES = frozenset({"deb", "apk", "rpm"})
"""Package types whose advisories name the source package."""


def components_of(result: SbomResult) -> tuple[Component, ...]:
    """The pipeline's components (one row each in the components table)."""
    return tuple(
        Component(
            name=p.name if not p.namespace or p.type != "npm" else f"{p.namespace}/{p.name}",
            version=p.version,
            purl=p.purl(),
            type=p.type,
            layer_digest=p.layer_digest or None,
            path=p.path or None,
            source_name=(p.source_name or p.name) if p.type in OS_TYPES else None,
            licenses=p.licenses,
        )
        for p in result.packages
    )


class OwnCataloger(Cataloger):
    """CycloneDX 1.6 JSON made by :mod:`sbom`, with a per-layer cache under ``cache_dir``."""

    def __init__(
        self, cache_dir: Path, *, max_layer_bytes: int = 8 * 1024**3, workers: int | None = None
    ) -> None:
        self.cache_dir = cache_dir
        self.max_layer_bytes = max_layer_bytes
        self.workers = workers

    def catalog(self, image: PulledImage) -> Sbom:
        # the plain copy the pull inflated (hashed to its diff_id) saves inflating it again;
        # the per-layer cache stays keyed by the pulled digest
        layers = [LayerInput(layer.digest, layer.plain or layer.path) for layer in image.layers]
        try:
            result = generate_sbom(
                layers,
                image_info(image),
                self.cache_dir,
                max_layer_bytes=self.max_layer_bytes,
                workers=self.workers,
                work_dir=image.layout_dir,  # big wanted files spill here, inside the data dir
            )
        except (LayerError, OSError) as exc:  # the job fails with the reason; the service stays
            raise CatalogError(f"SBOM of {image.target.pinned}: {exc}") from None
        return Sbom(
            format="cyclonedx-json",
            document=write_cyclonedx(result),
            components=components_of(result),
            generator=f"{TOOL_NAME} {tool_version()}",
            warnings=result.warnings,
        )
