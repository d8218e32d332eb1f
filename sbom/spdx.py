"""SPDX 2.3 JSON: the image is the described package, each package CONTAINS-related to it."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

from sbom.cyclonedx import TOOL_NAME, image_purl, tool_version
from sbom.generate import SbomResult
from sbom.interface import Package
from sbom.licenses import is_spdx

__all__ = ["write_spdx"]

_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]")
_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")


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


def write_spdx(result: SbomResult, created: datetime | None = None) -> bytes:
    """SPDX 2.3 JSON of ``result``."""
    moment = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    image_id = "SPDXRef-Image"
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
                    "referenceLocator": image_purl(result),
                }
            ],
        }
    ]
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    extracted: dict[str, str] = {}
    for index, package in enumerate(result.packages):
        spdx_id = f"SPDXRef-Package-{package.type}-{_ID_CHARS.sub('-', package.name)}-{index}"
        license_text = _license(package, extracted)
        packages.append(
            {
                "SPDXID": spdx_id,
                "name": package.name,
                "versionInfo": package.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": license_text,
                "copyrightText": "NOASSERTION",
                "primaryPackagePurpose": "LIBRARY",
                "sourceInfo": f"layer {package.layer_digest} file /{package.path}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": package.purl(),
                    }
                ],
            }
        )
        relationships.append(
            {
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": spdx_id,
            }
        )
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
