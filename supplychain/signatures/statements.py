"""in-toto Statement v1 (in-toto/attestation ``spec/v1/statement.md``) for what we attest.

``{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name", "digest": {"sha256": hex}}],
"predicateType": URI, "predicate": {...}}``. We issue: our CycloneDX SBOM
(``https://cyclonedx.org/bom``), our vulnerability scan (cosign's
``https://cosign.sigstore.dev/attestation/vuln/v1``) and each gate verdict as a SLSA Verification
Summary Attestation (``https://slsa.dev/verification_summary/v1``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from supplychain.interface import ImageTarget, Sbom, ScanResult, Verdict
from supplychain.signatures.dsse import DsseError, Envelope

__all__ = [
    "COSIGN_SIGN",
    "CYCLONEDX",
    "IN_TOTO_PAYLOAD_TYPE",
    "KNOWN_PREDICATES",
    "OPENVEX",
    "SLSA_PROVENANCE",
    "STATEMENT_V1",
    "VSA",
    "VULN",
    "EvidenceRef",
    "Statement",
    "read_statement",
    "sbom_statement",
    "sha256_of",
    "statement",
    "vsa_statement",
    "vuln_statement",
]

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
CYCLONEDX = "https://cyclonedx.org/bom"
SPDX = "https://spdx.dev/Document"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
VSA = "https://slsa.dev/verification_summary/v1"
OPENVEX = "https://openvex.dev/ns/v0.2.0"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
KNOWN_PREDICATES = frozenset(
    {
        CYCLONEDX,
        SPDX,
        VULN,
        SLSA_PROVENANCE,
        "https://slsa.dev/provenance/v0.2",
        VSA,
        OPENVEX,
        "https://openvex.dev/ns",
        COSIGN_SIGN,
    }
)
"""Predicate types the policy may rely on."""
MAX_STATEMENT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Statement:
    """A parsed in-toto statement."""

    predicate_type: str
    """``predicateType`` URI."""
    subject_digests: frozenset[str]
    """``sha256:<hex>`` of every subject."""
    predicate: object
    """The predicate as parsed JSON (only ever used after the envelope verified)."""


@dataclass(frozen=True)
class EvidenceRef:
    """One piece of evidence a verdict used, for the VSA's ``inputAttestations``."""

    uri: str
    """Where the evidence is (``registry/repo@digest``, ``trivy-db:…``)."""
    digest: str
    """``sha256:<hex>`` of it."""


def statement(target: ImageTarget, predicate_type: str, predicate: object) -> bytes:
    """A v1 statement about the image ``target`` (subject: its repository and digest)."""
    algorithm, _, hex_digest = target.digest.partition(":")
    document = {
        "_type": STATEMENT_V1,
        "subject": [
            {"name": f"{target.registry}/{target.repository}", "digest": {algorithm: hex_digest}}
        ],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def read_statement(payload: bytes) -> Statement:
    """Parse a statement (v1 or v0.1); raise ValueError when it is not one."""
    if len(payload) > MAX_STATEMENT:
        raise ValueError("statement too large")
    try:
        document = json.loads(payload)
        kind, predicate_type = document["_type"], document["predicateType"]
        subjects = document["subject"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("not an in-toto statement") from None
    if kind not in (STATEMENT_V1, STATEMENT_V01) or not isinstance(predicate_type, str):
        raise ValueError("not an in-toto statement")
    if not isinstance(subjects, list):
        raise ValueError("statement subject is not a list")
    digests: set[str] = set()
    for subject in subjects:
        stated = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(stated, dict) and isinstance(stated.get("sha256"), str):
            digests.add("sha256:" + stated["sha256"].lower())
    return Statement(predicate_type, frozenset(digests), document.get("predicate"))


def sbom_statement(target: ImageTarget, sbom: Sbom) -> bytes:
    """Our CycloneDX SBOM of ``target`` as an in-toto statement."""
    try:
        predicate = json.loads(sbom.document)
    except ValueError:
        raise ValueError("the SBOM document is not JSON") from None
    return statement(target, CYCLONEDX, predicate)


def vuln_statement(target: ImageTarget, scan: ScanResult) -> bytes:
    """Our vulnerability scan of ``target`` in cosign's vuln predicate (``result`` = the report)."""
    try:
        report = json.loads(scan.report) if scan.report else None
    except ValueError:
        raise ValueError("the scan report is not JSON") from None
    db_version = scan.db_updated_at.isoformat() if scan.db_updated_at else ""
    now = _now()
    predicate = {
        "invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": f"pkg:github/aquasecurity/{scan.scanner.lower()}@{scan.scanner_version}",
            "version": scan.scanner_version,
            "db": {"uri": scan.db_digest or "", "version": db_version},
            "result": report,
        },
        "metadata": {"scanStartedOn": now, "scanFinishedOn": now},
    }
    return statement(target, VULN, predicate)


def vsa_statement(
    target: ImageTarget,
    verdict: Verdict,
    *,
    verifier_id: str,
    trivy_db_version: str | None,
    evidence: tuple[EvidenceRef, ...],
) -> bytes:
    """A SLSA VSA v1 for a gate verdict: names the policy digest, Trivy DB and evidence used."""
    algorithm, _, hex_digest = target.digest.partition(":")
    inputs = [
        {"uri": e.uri, "digest": {"sha256": e.digest.removeprefix("sha256:")}} for e in evidence
    ]
    predicate = {
        "verifier": {"id": verifier_id, "version": {"trivy-db": trivy_db_version or "unknown"}},
        "timeVerified": (verdict.evaluated_at or datetime.now(UTC)).isoformat(),
        "resourceUri": f"{target.registry}/{target.repository}@{algorithm}:{hex_digest}",
        "policy": {
            "uri": f"supplychain:policy/{verdict.policy}",
            "digest": {"sha256": verdict.policy_digest.removeprefix("sha256:")},
        },
        "inputAttestations": inputs,
        "verificationResult": "PASSED" if verdict.decision == "allow" else "FAILED",
        "verifiedLevels": ["SUPPLYCHAIN_POLICY_PASSED"] if verdict.decision == "allow" else [],
        "slsaVersion": "1.0",
    }
    return statement(target, VSA, predicate)


def sha256_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def attested_statement(blob: bytes) -> Statement:
    """The statement in a stored attestation: a DSSE envelope, or a Sigstore bundle holding one.

    Only for evidence the verifier marked verified: this does not check signatures.
    """
    try:
        document = json.loads(blob)
    except ValueError:
        raise ValueError("attestation is not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("attestation is not a JSON object")
    envelope = document.get("dsseEnvelope", document)
    try:
        parsed = Envelope.from_json(envelope if isinstance(envelope, dict) else {})
    except DsseError as exc:
        raise ValueError(str(exc)) from None
    return read_statement(parsed.payload)
