"""CycloneDX 1.6 (JSON and XML) with cyclonedx-python-lib.

metadata.component is the image (``pkg:oci/<name>@<digest>``); an ``operating-system`` component
carries the OS packages (so ``trivy sbom`` matches them against its Debian/Alpine advisories);
every package has its purl, stated licenses, source package, and the layer and file it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

from cyclonedx.contrib.license.exceptions import InvalidSpdxLicenseException
from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

from sbom.generate import SbomResult
from sbom.interface import Package

__all__ = ["TOOL_NAME", "image_purl", "package_ref", "to_bom", "tool_version", "write_cyclonedx"]

TOOL_NAME = "supplychain"
PROP = "supplychain:"
TRIVY = "aquasecurity:trivy:"
_OS_TYPES = ("deb", "apk", "rpm")


def tool_version() -> str:
    """Our version, as installed."""
    try:
        return dist_version("supplychain")
    except PackageNotFoundError:
        return "0+unknown"


def image_purl(result: SbomResult) -> str:
    """``pkg:oci/<last path element>@<digest>?repository_url=<host/repo>&tag=<tag>``."""
    qualifiers: dict[str, str] = {}
    if result.image.repository_url:
        qualifiers["repository_url"] = result.image.repository_url
    if result.image.tag:
        qualifiers["tag"] = result.image.tag
    name = result.image.name.rstrip("/").rsplit("/", 1)[-1].lower() or "image"
    return PackageURL(
        type="oci", name=name, version=result.image.digest, qualifiers=qualifiers or None
    ).to_string()


def package_ref(package: Package, index: int) -> str:
    """A bom-ref unique in the document: the purl, suffixed when a purl repeats."""
    return package.purl() if index == 0 else f"{package.purl()}#{index}"


def _properties(package: Package) -> Iterable[Property]:
    yield Property(name=f"{PROP}layer_digest", value=package.layer_digest)
    yield Property(name=f"{PROP}path", value=package.path)
    if package.source_name:
        yield Property(name=f"{PROP}source_name", value=package.source_name)
    if package.source_version:
        yield Property(name=f"{PROP}source_version", value=package.source_version)
    if package.type in _OS_TYPES and package.source_name:
        # Trivy's own taxonomy: ``trivy sbom`` matches OS advisories by source package
        yield Property(name=f"{TRIVY}SrcName", value=package.source_name)
        version = package.source_version or package.version
        epoch, colon, rest = version.partition(":")
        if colon and epoch.isdigit():
            yield Property(name=f"{TRIVY}SrcEpoch", value=epoch)
            version = rest
        yield Property(name=f"{TRIVY}SrcVersion", value=version)
    for name, value in package.properties:
        yield Property(name=f"{PROP}{name}", value=value)


def _licenses(factory: LicenseFactory, texts: tuple[str, ...]) -> list[License]:
    """One license or expression as stated; several become named/id licenses (CycloneDX does
    not allow an expression next to other licenses)."""
    if len(texts) == 1:
        return [factory.make_from_string(texts[0])]
    made: list[License] = []
    for text in texts:
        try:
            made.append(factory.make_with_id(text))
        except InvalidSpdxLicenseException:
            made.append(factory.make_with_name(text))
    return made


def to_bom(result: SbomResult) -> Bom:
    """The CycloneDX model of ``result``."""
    bom = Bom()
    image = Component(
        type=ComponentType.CONTAINER,
        name=result.image.name,
        version=result.image.digest,
        purl=PackageURL.from_string(image_purl(result)),
        bom_ref=image_purl(result),
        properties=[Property(name=f"{PROP}layer", value=d) for d in result.layers],
    )
    bom.metadata.component = image
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name=TOOL_NAME, version=tool_version())
    )
    operating_system: Component | None = None
    if result.os_info is not None:
        operating_system = Component(
            type=ComponentType.OPERATING_SYSTEM,
            name=result.os_info.family,
            version=result.os_info.version,
            description=result.os_info.name or None,
            bom_ref=f"os:{result.os_info.family}-{result.os_info.version}",
        )
        bom.components.add(operating_system)
    factory = LicenseFactory()
    seen: dict[str, int] = {}
    by_name: dict[tuple[str, str], Component] = {}
    made: list[tuple[Package, Component]] = []
    for package in result.packages:
        purl = package.purl()
        index = seen.get(purl, 0)
        seen[purl] = index + 1
        component = Component(
            type=ComponentType.LIBRARY,
            name=package.name,
            group=package.namespace if package.type in ("npm", "maven") else None,
            version=package.version,
            purl=PackageURL.from_string(purl),
            bom_ref=package_ref(package, index),
            licenses=_licenses(factory, package.licenses),
            properties=list(_properties(package)),
        )
        bom.components.add(component)
        by_name.setdefault((package.type, package.name.lower()), component)
        made.append((package, component))
    os_children = [c for p, c in made if p.type in _OS_TYPES]
    if operating_system is not None:
        bom.register_dependency(image, [operating_system])
        bom.register_dependency(operating_system, os_children)
    bom.register_dependency(image, [c for p, c in made if p.type not in _OS_TYPES])
    for package, component in made:
        targets = [
            by_name[(package.type, name.lower())]
            for name in package.depends
            if (package.type, name.lower()) in by_name
        ]
        bom.register_dependency(component, [t for t in targets if t is not component])
    return bom


def write_cyclonedx(result: SbomResult, xml: bool = False) -> bytes:
    """CycloneDX 1.6 JSON (or XML) of ``result``."""
    output = OutputFormat.XML if xml else OutputFormat.JSON
    text = make_outputter(to_bom(result), output, SchemaVersion.V1_6).output_as_string(indent=None)
    return text.encode("utf-8")
