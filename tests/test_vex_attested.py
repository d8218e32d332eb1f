"""VEX an image carries as a verified attestation counts exactly as uploaded VEX, and only then."""

from __future__ import annotations

from datetime import UTC, datetime

from supplychain.decide.decision import ImageFacts, decide
from supplychain.decide.policy import DEFAULT_RULES, RulesPolicy
from supplychain.decide.vex import VexError, parse_vex
from supplychain.decide.vex_attested import attested_vex
from supplychain.interface import Evidence, Finding, ImageTarget, ScanResult, SignatureEvidence
from supplychain.signatures.dsse import sign_envelope, verify_envelope
from supplychain.signatures.keys import generate_key, key_id
from supplychain.signatures.signer import KeyFileSigner
from supplychain.signatures.statements import IN_TOTO_PAYLOAD_TYPE, OPENVEX, statement

IMAGE = ImageTarget("127.0.0.1:5000", "team/app", "sha256:" + "ab" * 32, "v1")
CRITICAL = Finding(
    "CVE-2018-18074", "requests", "pkg:pypi/requests@2.19.0", "2.19.0", "2.20.0", "CRITICAL"
)
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def openvex(product: str, status: str = "not_affected") -> dict[str, object]:
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "platform-security",
        "timestamp": "2026-11-23T10:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": "CVE-2018-18074"},
                "products": [{"@id": product}],
                "status": status,
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }


def attestation(document: dict[str, object], *, verified: bool) -> SignatureEvidence:
    key = generate_key()
    signer = KeyFileSigner(key)
    envelope = sign_envelope(signer, IN_TOTO_PAYLOAD_TYPE, statement(IMAGE, OPENVEX, document))
    checked = verify_envelope(envelope, {key_id(key.public_key()): key.public_key()})
    return SignatureEvidence(
        "attestation:att-tag",
        f"{IMAGE.registry}/{IMAGE.repository}:sha256-{'ab' * 32}.att",
        "sha256:" + "cd" * 32,
        verified,
        f"{OPENVEX}: verified" if verified else f"{OPENVEX}: no trusted key",
        checked.signer,
        envelope.to_json(),
        OPENVEX,
    )


def verdict_with(found: SignatureEvidence) -> str:
    """What the one decision says when the recorder kept what the attestation carries."""
    statements = []
    for document in attested_vex((found,)):
        try:
            statements += parse_vex(document, image=IMAGE.digest)[1]
        except VexError:
            continue
    scan = ScanResult("trivy", "0.76.0", NOW, None, (CRITICAL,))
    facts = ImageFacts(IMAGE.digest, Evidence(None, None, scan, (found,)), tuple(statements))
    return decide(facts, RulesPolicy(DEFAULT_RULES), NOW).decision


def test_verified_vex_attestation_exempts_the_finding() -> None:
    found = attestation(openvex(f"pkg:oci/app@{IMAGE.digest}"), verified=True)
    assert verdict_with(found) == "allow"


def test_unverified_vex_attestation_is_never_used() -> None:
    found = attestation(openvex(f"pkg:oci/app@{IMAGE.digest}"), verified=False)
    assert attested_vex((found,)) == []
    assert verdict_with(found) == "deny"


def test_vex_about_another_image_or_affected_status_does_not_exempt() -> None:
    other = "sha256:" + "ef" * 32
    assert verdict_with(attestation(openvex(f"pkg:oci/app@{other}"), verified=True)) == "deny"
    affected = openvex(f"pkg:oci/app@{IMAGE.digest}", status="affected")
    assert verdict_with(attestation(affected, verified=True)) == "deny"
