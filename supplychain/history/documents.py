"""SBOM and attestation documents as stored, checked against their recorded digests.

An SBOM is stored compressed (:mod:`supplychain.evidence.sbomstore`) with the SHA-256 of the
document itself; an attestation's envelope is a :class:`~supplychain.evidence.models.Payload`
stored by its SHA-256. Both are hashed again on every read: a row changed behind the service's
back is refused (:class:`DocumentError`), never served as if it were the recorded document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.evidence.sbomstore import StoredSbomError, unpack

__all__ = ["Document", "DocumentError", "attestation_envelope", "sbom"]

SBOM_TYPES = {
    "cyclonedx-json": "application/vnd.cyclonedx+json",
    "spdx-json": "application/spdx+json",
}
DSSE = "application/vnd.dsse.envelope.v1+json"


class DocumentError(Exception):
    """No such document (``missing``), or a stored one that does not match its digest."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Document:
    """A stored document and what names it."""

    data: bytes
    """The bytes as recorded."""
    digest: str
    """``sha256:<hex>`` of ``data`` (checked)."""
    media_type: str
    """Its content type."""


def _checked(data: bytes, digest: str | None, what: str) -> str:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest is None or not hmac.compare_digest(actual, digest):
        raise DocumentError(f"{what} does not match its recorded digest {digest}", missing=False)
    return actual


def sbom(session: Session, scan_id: int) -> Document:
    """The SBOM scan ``scan_id`` recorded."""
    scan = session.get(models.Scan, scan_id)
    if scan is None or scan.sbom is None:
        raise DocumentError(f"no SBOM recorded for scan {scan_id}", missing=True)
    try:
        data = unpack(scan.sbom, scan.sbom_encoding)
    except StoredSbomError as exc:
        raise DocumentError(f"stored SBOM of scan {scan_id}: {exc}", missing=False) from None
    assert data is not None  # noqa: S101 (scan.sbom is not None)
    digest = _checked(data, scan.sbom_digest, f"stored SBOM of scan {scan_id}")
    media_type = SBOM_TYPES.get(scan.sbom_format or "", "application/json")
    return Document(data, digest, media_type)


def _media_type(data: bytes) -> str:
    """A Sigstore bundle names its own media type; a DSSE envelope has a payloadType."""
    try:
        doc = json.loads(data)
    except ValueError:
        return "application/octet-stream"
    if isinstance(doc, dict):
        named = doc.get("mediaType")
        if isinstance(named, str) and named.startswith("application/vnd.dev.sigstore.bundle"):
            return named
        if "payloadType" in doc:
            return DSSE
    return "application/json"


def attestation_envelope(session: Session, attestation_id: int) -> Document:
    """The envelope (or Sigstore bundle) attestation ``attestation_id`` was found with."""
    row = session.get(models.Attestation, attestation_id)
    if row is None:
        raise DocumentError(f"no attestation {attestation_id}", missing=True)
    if row.payload_digest is not None:
        payload = session.get(models.Payload, row.payload_digest)
        data = payload.data if payload is not None else None
        digest: str | None = row.payload_digest
    else:  # rows written before payloads kept the envelope inline
        data = row.envelope
        digest = "sha256:" + hashlib.sha256(data).hexdigest() if data else None
    if not data:
        raise DocumentError(f"no envelope stored for attestation {attestation_id}", missing=True)
    checked = _checked(data, digest, f"stored envelope of attestation {attestation_id}")
    return Document(data, checked, _media_type(data))
