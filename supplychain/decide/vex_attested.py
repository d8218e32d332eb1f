"""VEX carried by the image as verified attestations: marks findings before the policy decides.

Pure functions (no database): the pipeline applies them between the verifier and the policy, and
the recorder stores the same documents with :func:`supplychain.decide.vex.record_vex`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from supplychain.decide.vex import VexError, VexStatement, parse_vex, same_package
from supplychain.interface import ScanResult, SignatureEvidence
from supplychain.signatures.statements import attested_statement

__all__ = ["VEX_PREDICATE_PREFIXES", "attested_vex", "with_attested_vex"]


VEX_PREDICATE_PREFIXES = ("https://openvex.dev/ns", "https://cyclonedx.org/vex")
"""Predicate types of VEX attestations (OpenVEX; CycloneDX VEX as cosign names it)."""


def attested_vex(found: Sequence[SignatureEvidence]) -> list[bytes]:
    """VEX documents from VERIFIED attestations (signature, subject, then predicate type)."""
    documents = []
    for item in found:
        ptype = item.predicate_type or ""
        if not (item.is_attestation and item.verified and ptype.startswith(VEX_PREDICATE_PREFIXES)):
            continue
        try:
            predicate = attested_statement(item.payload).predicate
        except ValueError:
            continue  # verified means it parsed before; a payload not kept has nothing to add
        documents.append(json.dumps(predicate).encode())
    return documents


def with_attested_vex(
    scan: ScanResult, found: Sequence[SignatureEvidence], image: str
) -> ScanResult:
    """``scan`` with findings marked by the image's verified VEX attestations (none deleted)."""
    statements: list[VexStatement] = []
    for document in attested_vex(found):
        try:
            statements += parse_vex(document, image=image)[1]
        except VexError:
            continue
    if not statements:
        return scan
    marked = []
    for finding in scan.findings:
        status = finding.vex_status
        for stmt in statements:  # in document order: the last matching statement wins
            if (
                stmt.product == image
                and stmt.vuln_id == finding.vuln_id
                and (stmt.subcomponent is None or same_package(stmt.subcomponent, finding.purl))
            ):
                status = stmt.status
        marked.append(replace(finding, vex_status=status))
    return replace(scan, findings=tuple(marked))
