"""The Sigstore client conformance suite's bundle-verification cases, verified offline.

The cases are copied into ``tests/data/conformance/sigstore-bundle-verify`` with their
source and licence (see its README): one folder per case, a name ending in ``_fail`` must be
rejected. Nothing is mocked: real bundles from Sigstore's production and staging instances
are verified against the embedded public-good root or the case's own ``trusted_root.json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supplychain.signatures.sigstore_verify import (
    IdentityPolicy,
    SigstoreResult,
    SigstoreVerifyError,
    verify_bundle,
)

CASES = Path(__file__).resolve().parent / "data/conformance/sigstore-bundle-verify"
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


def _case_names() -> list[str]:
    if not CASES.is_dir():
        return []
    return sorted(p.name for p in CASES.iterdir() if (p / "bundle.sigstore.json").is_file())


def _read_or(path: Path, default: str) -> str:
    return path.read_text().strip() if path.is_file() else default


def _verify_case(case: Path) -> SigstoreResult:
    artifact_path = case / "artifact" if (case / "artifact").is_file() else CASES / "a.txt"
    key = case / "key.pub"
    root = case / "trusted_root.json"
    try:
        return verify_bundle(
            (case / "bundle.sigstore.json").read_bytes(),
            artifact=artifact_path.read_bytes(),
            policy=IdentityPolicy(
                identity=_read_or(case / "identity", DEFAULT_IDENTITY),
                issuer=_read_or(case / "issuer", DEFAULT_ISSUER),
            ),
            public_key_pem=key.read_bytes() if key.is_file() else None,
            trusted_root=root if root.is_file() else None,
        )
    except SigstoreVerifyError as exc:  # an unusable trust root is a rejection too
        return SigstoreResult(verified=False, reason=f"unusable input: {exc}", signer=None)


def test_suite_is_complete() -> None:
    """All 70 cases of the pinned suite are present, so none is silently skipped."""
    assert len(_case_names()) == 70


@pytest.mark.parametrize("name", _case_names())
def test_conformance_case(name: str) -> None:
    result = _verify_case(CASES / name)
    if name.endswith("_fail"):
        assert not result.verified, f"{name} must be rejected"
        assert result.reason and result.signer is None
    else:
        assert result.verified, f"{name} must verify: {result.reason}"
        assert result.signer


def test_signer_names_identity_and_issuer() -> None:
    result = _verify_case(CASES / "happy-path-v0.3")
    assert result.signer == f"{DEFAULT_IDENTITY} ({DEFAULT_ISSUER})"


def test_key_signer_is_key_fingerprint() -> None:
    result = _verify_case(CASES / "managed-key-happy-path")
    assert result.verified and result.signer is not None
    assert result.signer.startswith("key sha256:")


def test_dsse_payload_is_returned() -> None:
    case = CASES / "happy-path-intoto-in-dsse-v3"
    result = verify_bundle(
        (case / "bundle.sigstore.json").read_bytes(),
        policy=IdentityPolicy(identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER),
    )
    assert result.verified, result.reason
    assert result.payload_type == "application/vnd.in-toto+json"
    assert result.payload is not None and b'"subject"' in result.payload


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (IdentityPolicy(identity="someone@example.com", issuer=DEFAULT_ISSUER), "identity"),
        (IdentityPolicy(identity=DEFAULT_IDENTITY, issuer="https://accounts.google.com"), "issuer"),
        (
            IdentityPolicy(
                identity_regexp=r"https://github\.com/other-org/.*", issuer=DEFAULT_ISSUER
            ),
            "identity",
        ),
        (IdentityPolicy(identity=DEFAULT_IDENTITY, issuer_regexp=r"https://gitlab\..*"), "issuer"),
    ],
)
def test_identity_or_issuer_mismatch_is_rejected_with_reason(
    policy: IdentityPolicy, reason: str
) -> None:
    """A genuine bundle signed by someone else fails, and the reason says what differed."""
    case = CASES / "happy-path-v0.3"
    result = verify_bundle(
        (case / "bundle.sigstore.json").read_bytes(),
        artifact=(CASES / "a.txt").read_bytes(),
        policy=policy,
    )
    assert not result.verified
    assert f"{reason} mismatch" in result.reason


def test_identity_regexp_accepts_matching_workflow() -> None:
    result = verify_bundle(
        (CASES / "happy-path-v0.3/bundle.sigstore.json").read_bytes(),
        artifact=(CASES / "a.txt").read_bytes(),
        policy=IdentityPolicy(
            identity_regexp=r"https://github\.com/sigstore-conformance/.+@refs/heads/main",
            issuer_regexp=r"https://token\.actions\.githubusercontent\.com",
        ),
    )
    assert result.verified, result.reason


def test_expired_certificate_without_valid_timestamp_is_rejected() -> None:
    case = CASES / "intoto-expired-certificate_fail"
    result = _verify_case(case)
    assert not result.verified
    assert "expired" in result.reason or "not valid" in result.reason


def test_artifact_digest_must_be_a_statement_subject() -> None:
    result = verify_bundle(
        (CASES / "happy-path-intoto-in-dsse-v3/bundle.sigstore.json").read_bytes(),
        artifact_digest="sha256:" + "00" * 32,
        policy=IdentityPolicy(identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER),
    )
    assert not result.verified
    assert "subject" in result.reason


@pytest.mark.parametrize(
    "name", ["happy-path-v0.3", "happy-path-intoto-in-dsse-v3", "managed-key-happy-path"]
)
def test_the_verified_signing_time_is_the_log_entrys(name: str) -> None:
    """Certificate- and key-signed bundles: the signing time is the Rekor entry's integrated
    time, checked with it (attestations' maximum age is counted from it)."""
    result = _verify_case(CASES / name)
    bundle = json.loads((CASES / name / "bundle.sigstore.json").read_text())
    integrated = int(bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"])
    assert result.verified and result.signed_at == datetime.fromtimestamp(integrated, tz=UTC)


def test_a_timestamp_authority_alone_gives_the_signing_time() -> None:
    """A Rekor v2 bundle has no integrated time: its RFC 3161 timestamp is the signing time."""
    result = _verify_case(CASES / "rekor2-happy-path")
    assert result.verified and result.signed_at is not None
    assert datetime(2025, 1, 1, tzinfo=UTC) < result.signed_at < datetime(2026, 1, 1, tzinfo=UTC)


def test_a_failed_verification_states_no_signing_time() -> None:
    result = _verify_case(CASES / "integrated-time-in-future_fail")
    assert not result.verified and result.signed_at is None
