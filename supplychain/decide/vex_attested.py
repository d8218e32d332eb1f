"""VEX carried by the image as verified attestations.

The recorder stores these documents once (:func:`supplychain.decide.vex.record_vex`, keeping only
statements about the attested image); the decision then matches them exactly as uploaded VEX.
An attestation that did not verify is never read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from supplychain.interface import SignatureEvidence
from supplychain.signatures.statements import attested_statement

__all__ = ["VEX_PREDICATE_PREFIXES", "attested_vex"]


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
