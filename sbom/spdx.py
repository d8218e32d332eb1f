"""SPDX 2.3 JSON, read by Trivy and other consumers as they read our CycloneDX.

The document DESCRIBES the image (``primaryPackagePurpose: CONTAINER``); the image CONTAINS the
operating system (``OPERATING-SYSTEM``, SPDXID ``SPDXRef-OperatingSystem-…``, the prefix Trivy's
SPDX decoder keys on), which CONTAINS the OS packages; the image CONTAINS the language packages;
packages DEPENDS_ON what their package DB says they need (the graph of our CycloneDX). An OS
package built from a source package says so in ``sourceInfo`` as Trivy writes and reads it:
``built package from: NAME VERSION`` (OS advisories are matched by source package). Where a
package came from (layer, file) is an annotation ``supplychain:layer_digest: …``, named as the
CycloneDX property.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

from sbom.cyclonedx import _OS_TYPES, PROP, TOOL_NAME, _plan, tool_version
from sbom.generate import SbomResult
from sbom.interface import Package
from sbom.licenses import is_spdx

__all__ = ["write_spdx"]

_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]")
_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
SOURCE_PREFIX = "built package from: "
"""``sourceInfo`` of a binary package built from a source package (Trivy's wording)."""


def _license(package: Package, extracted: dict[str, str]) -> str:
    """The declared licenses as an SPDX expression; what is not SPDX becomes a LicenseRef."""
    if not package.licenses:
        return "NOASSERTION"
    parts = []
    for text in package.licenses:
        if not is_spdx(text):
            ref = "LicenseRef-" + _REF_CHARS.sub("-", text)[:64]
            extracted[ref] = text
            parts.append(ref)
        else:
            parts.append(f"({text})" if " " in text and len(package.licenses) > 1 else text)
    return " AND ".join(parts)


def _source_info(package: Package) -> str | None:
    """``built package from: NAME VERSION`` for an OS package whose source package is known."""
    if package.type not in _OS_TYPES or not package.source_name:
        return None
    return f"{SOURCE_PREFIX}{package.source_name} {package.source_version or package.version}"


def _annotations(properties: tuple[tuple[str, str], ...], moment: str) -> list[dict[str, str]]:
    """Our CycloneDX properties (layer, file, …) as ``name: value`` package annotations."""
    return [
        {
            "annotator": f"Tool: {TOOL_NAME}-{tool_version()}",
            "annotationDate": moment,
            "annotationType": "OTHER",
            "comment": f"{name}: {value}",
        }
        for name, value in properties
        if name.startswith(PROP) and value
    ]


def write_spdx(result: SbomResult, created: datetime | None = None) -> bytes:
    """SPDX 2.3 JSON of ``result``."""
    moment = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plan = _plan(result)  # the same refs and graph as our CycloneDX
    image_id = "SPDXRef-Image"
    ids = {plan.image_ref: image_id}
    namespace_seed = hashlib.sha256(f"{result.image.digest}{moment}".encode()).hexdigest()
    packages: list[dict[str, object]] = [
        {
            "SPDXID": image_id,
            "name": result.image.name,
            "versionInfo": result.image.digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": plan.image_ref,
                }
            ],
        }
    ]
    if result.os_info is not None and plan.os_ref is not None:
        os_id = "SPDXRef-OperatingSystem-" + _ID_CHARS.sub("-", plan.os_ref.removeprefix("os:"))
        ids[plan.os_ref] = os_id
        system: dict[str, object] = {
            "SPDXID": os_id,
            "name": result.os_info.family,
            "versionInfo": result.os_info.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }
        if result.os_info.name:
            system["summary"] = result.os_info.name
        packages.append(system)
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    extracted: dict[str, str] = {}
    for index, entry in enumerate(plan.entries):
        package = entry.package
        spdx_id = f"SPDXRef-Package-{package.type}-{_ID_CHARS.sub('-', package.name)}-{index}"
        ids[entry.ref] = spdx_id
        license_text = _license(package, extracted)
        item: dict[str, object] = {
            "SPDXID": spdx_id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license_text,
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": entry.purl,
                }
            ],
        }
        source = _source_info(package)
        if source:
            item["sourceInfo"] = source
        annotations = _annotations(entry.properties, moment)
        if annotations:
            item["annotations"] = annotations
        packages.append(item)
    for parent, children in plan.dependencies.items():
        kind = "CONTAINS" if parent in (plan.image_ref, plan.os_ref) else "DEPENDS_ON"
        relationships += [
            {
                "spdxElementId": ids[parent],
                "relationshipType": kind,
                "relatedSpdxElement": ids[child],
            }
            for child in children
        ]
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{result.image.name}@{result.image.digest}",
        "documentNamespace": f"https://spdx.org/spdxdocs/{TOOL_NAME}/{namespace_seed}",
        "creationInfo": {
            "created": moment,
            "creators": [f"Tool: {TOOL_NAME}-{tool_version()}"],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    }
    if extracted:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "extractedText": text, "name": text}
            for ref, text in sorted(extracted.items())
        ]
    return json.dumps(document, indent=None, separators=(",", ":")).encode("utf-8")
