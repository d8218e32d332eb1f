"""Sign → push → verify round trips through Debian's real ``docker-registry`` (distribution 2.8.2).

Distribution 2.8 has no referrers API, so referrer storage here always exercises the
distribution-spec's tag-schema fallback; no registry with the API is installable here (no zot,
no distribution 3 in Debian, PyPI or npm). cosign itself is not installable either, so a second,
independent check rebuilds cosign's payload from its published format and verifies our
signatures with ``cryptography`` alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from supplychain.interface import (
    ImageTarget,
    PulledImage,
    Sbom,
    ScanResult,
    SignatureEvidence,
    Verdict,
)
from supplychain.registry import BlobCache, RegistryClient
from supplychain.signatures import KeyFileSigner, generate_key
from supplychain.signatures.cosign import (
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_TYPE,
    StorageMode,
    attest_image,
    build_payload,
    issue_for_outcome,
    sign_image,
)
from supplychain.signatures.keys import KeyKind
from supplychain.signatures.sigstore_verify import IdentityPolicy
from supplychain.signatures.statements import CYCLONEDX, VSA, VULN, statement
from supplychain.signatures.storage import SignatureStore, fallback_tag, tag_for
from supplychain.stages.pipeline import Outcome
from supplychain.stages.verifier import SignatureVerifier, TrustPolicy
from tests.support.images import push, tiny_layout
from tests.support.registry import Registry

KINDS: tuple[KeyKind, ...] = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")
MODES: tuple[StorageMode, ...] = ("tag", "referrers")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def signers() -> dict[str, KeyFileSigner]:
    return {kind: KeyFileSigner(generate_key(kind)) for kind in KINDS}


class Env:
    """One freshly pushed image and the parts to sign and verify it."""

    def __init__(self, registry: Registry, tmp: Path, repository: str) -> None:
        self.registry = registry
        self.client = RegistryClient(
            frozenset({registry.host}), frozenset(), BlobCache(tmp / "cache", 10**9)
        )
        self.store = SignatureStore(self.client)
        digest = push(tiny_layout(), "tiny", f"{registry.host}/{repository}:v1")
        self.target = ImageTarget(registry.host, repository, digest, "v1")
        self.manifest = self.client.get_manifest(registry.host, repository, digest).data

    def verify(self, *keys: KeyFileSigner, **options: Any) -> tuple[SignatureEvidence, ...]:
        trust = TrustPolicy(keys={k.key_id: k.public_key for k in keys}, **options)
        return SignatureVerifier(self.client, trust).verify_target(self.target, self.manifest)

    def raw(self, reference: str) -> dict[str, Any]:
        """A manifest fetched with plain requests (independent of our client)."""
        response = requests.get(
            f"{self.registry.url}/v2/{self.target.repository}/manifests/{reference}",
            headers={"Accept": f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"},
            timeout=10,
        )
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def raw_blob(self, digest: str) -> bytes:
        url = f"{self.registry.url}/v2/{self.target.repository}/blobs/{digest}"
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        return response.content


_counter = iter(range(10**6))


@pytest.fixture
def env(registry: Registry, tmp_path: Path) -> Env:
    return Env(registry, tmp_path, f"team/app{next(_counter)}")


def _verify_with_cryptography(public: Any, signature: bytes, message: bytes) -> None:
    """cosign's key-pair scheme, written out from its spec, not from our code."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, message)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_sign_push_verify_round_trip(
    env: Env, signers: dict[str, KeyFileSigner], kind: str, mode: StorageMode
) -> None:
    signer = signers[kind]
    sign_image(env.store, env.target, signer, mode=mode)
    claim = statement(env.target, CYCLONEDX, {"bomFormat": "CycloneDX", "components": []})
    attest_image(env.store, env.target, signer, claim, CYCLONEDX, mode=mode)

    evidence = env.verify(signer)
    kinds = sorted(e.kind for e in evidence)
    if mode == "tag":
        assert kinds == ["attestation:att-tag", "cosign-tag"]
    else:
        assert kinds == ["attestation:referrer", "sigstore-bundle"]
    assert all(e.verified and e.signer == signer.key_id for e in evidence), evidence
    attestation = next(e for e in evidence if e.kind.startswith("attestation:"))
    assert attestation.reason.startswith(f"{CYCLONEDX}: verified")

    other = signers["ecdsa-p256" if kind != "ecdsa-p256" else "ed25519"]
    wrong = env.verify(other)
    assert wrong and not any(e.verified for e in wrong)
    assert all("does not verify" in e.reason or "no signature verifies" in e.reason for e in wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_sig_tag_is_cosign_format_checked_independently(
    env: Env, signers: dict[str, KeyFileSigner], kind: str
) -> None:
    signer = signers[kind]
    sign_image(env.store, env.target, signer, mode="tag")
    manifest = env.raw(f"sha256-{env.target.digest.removeprefix('sha256:')}.sig")
    assert manifest["mediaType"] == OCI_MANIFEST
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    stored = env.raw_blob(layer["digest"])
    expected = {
        "critical": {
            "identity": {"docker-reference": f"{env.target.registry}/{env.target.repository}"},
            "image": {"docker-manifest-digest": env.target.digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    assert json.loads(stored) == expected
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    _verify_with_cryptography(signer.public_key, signature, stored)


def test_referrer_uses_the_tag_schema_fallback_and_dsse_checks_independently(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ecdsa-p256"]
    (artifact_digest,) = sign_image(env.store, env.target, signer, mode="referrers")
    index = env.raw(fallback_tag(env.target.digest))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert entry["digest"] == artifact_digest
    assert entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    artifact = env.raw(artifact_digest)
    assert artifact["subject"]["digest"] == env.target.digest
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    bundle = json.loads(env.raw_blob(artifact["layers"][0]["digest"]))
    envelope = bundle["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    message = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    _verify_with_cryptography(
        signer.public_key, base64.b64decode(envelope["signatures"][0]["sig"]), message
    )
    assert json.loads(payload)["subject"][0]["digest"] == {
        "sha256": env.target.digest.removeprefix("sha256:")
    }
    # A second referrer is added to the same fallback index, not replacing the first.
    sign_image(env.store, env.target, signer, mode="referrers", annotations={"n": "2"})
    assert len(env.raw(fallback_tag(env.target.digest))["manifests"]) == 2
    assert all(e.verified for e in env.verify(signer))


def test_tampered_payload_fails_with_reason(env: Env, signers: dict[str, KeyFileSigner]) -> None:
    signer = signers["ecdsa-p256"]
    payload = build_payload(f"{env.target.registry}/{env.target.repository}", env.target.digest)
    signature = base64.b64encode(signer.sign(payload)).decode()
    tampered = payload.replace(b'"optional":null', b'"optional":{"evil":"yes"}')
    env.store.attach_to_tag(
        env.target, "sig", tampered, SIMPLESIGNING_TYPE, {SIGNATURE_ANNOTATION: signature}
    )
    (result,) = env.verify(signer)
    assert not result.verified
    assert result.reason == "signature does not verify with any trusted key"
    assert result.payload == tampered  # stored whole


def test_signature_moved_to_another_digest_fails(
    env: Env, registry: Registry, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ed25519"]
    # Another image in the same repository: the same layers, a manifest with an annotation.
    variant = env.raw(env.target.digest) | {"annotations": {"variant": "2"}}
    data = json.dumps(variant).encode()
    url = f"{registry.url}/v2/{env.target.repository}/manifests/v2"
    response = requests.put(url, data=data, headers={"Content-Type": OCI_MANIFEST}, timeout=10)
    assert response.status_code == 201
    other = ImageTarget(
        registry.host, env.target.repository, response.headers["Docker-Content-Digest"]
    )
    assert other.digest != env.target.digest
    sign_image(env.store, other, signer, mode="tag")
    # Copy its signature layer (payload + annotation) under this image's .sig tag.
    stored = env.raw(tag_for(other.digest, "sig"))["layers"][0]
    payload = env.raw_blob(stored["digest"])
    env.store.attach_to_tag(env.target, "sig", payload, SIMPLESIGNING_TYPE, stored["annotations"])
    (result,) = env.verify(signer)
    assert not result.verified and result.signer == signer.key_id
    assert result.reason == f"signature valid but payload signs {other.digest}, not this image"


def test_docker_reference_must_match_unless_allowed(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ecdsa-p256"]
    sign_image(env.store, env.target, signer, docker_reference="quay.io/elsewhere/app")
    (result,) = env.verify(signer)
    assert not result.verified and "names repository 'quay.io/elsewhere/app'" in result.reason
    (allowed,) = env.verify(signer, allowed_references=frozenset({"quay.io/elsewhere/app"}))
    assert allowed.verified


def test_dsse_subject_mismatch_fails(env: Env, signers: dict[str, KeyFileSigner]) -> None:
    signer = signers["ecdsa-p384"]
    elsewhere = ImageTarget(env.target.registry, env.target.repository, "sha256:" + "0" * 64)
    claim = statement(elsewhere, CYCLONEDX, {"components": []})
    attest_image(env.store, env.target, signer, claim, CYCLONEDX, mode="both")
    results = env.verify(signer)
    assert len(results) == 2
    for result in results:
        assert not result.verified and result.signer == signer.key_id
        assert result.reason == f"{CYCLONEDX}: statement subject is not this image"


def test_unknown_predicate_fails_only_where_policy_requires_known(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["rsa-3072"]
    custom = "https://example.com/predicates/custom/v1"
    attest_image(env.store, env.target, signer, statement(env.target, custom, {}), custom)
    (lenient,) = env.verify(signer)
    assert lenient.verified
    (strict,) = env.verify(signer, require_known_predicates=True)
    assert not strict.verified and strict.reason == f"{custom}: unknown predicate type"


def test_unverified_when_no_key_is_configured(env: Env, signers: dict[str, KeyFileSigner]) -> None:
    sign_image(env.store, env.target, signers["ecdsa-p256"], mode="both")
    results = env.verify()
    assert len(results) == 2 and not any(r.verified for r in results)
    assert all("no trusted key configured" in r.reason for r in results)


def _outcome(
    env: Env, decision: str, signatures: tuple[SignatureEvidence, ...]
) -> tuple[Outcome, Verdict]:
    image = PulledImage(
        env.target, OCI_MANIFEST, env.manifest, b"{}", None, (), Path("/nonexistent")
    )
    sbom = Sbom("cyclonedx-json", b'{"bomFormat":"CycloneDX","components":[]}', (), "trivy 0.76.0")
    report = b'{"SchemaVersion":2,"Results":[]}'
    updated = datetime(2026, 11, 1, tzinfo=UTC)
    scan = ScanResult("Trivy", "0.76.0", updated, "sha256:" + "1f" * 32, (), report)
    verdict = Verdict(decision, ("reason",), "default", "sha256:" + "2e" * 32, updated)  # type: ignore[arg-type]
    return Outcome(env.target, image, sbom, scan, signatures, {}), verdict


def test_issue_after_allow_signs_and_attests_sbom_scan_and_vsa(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ecdsa-p256"]
    issue_for_outcome(env.store, *_outcome(env, "allow", ()), signer, mode="tag")
    evidence = env.verify(signer, require_known_predicates=True)
    assert all(e.verified for e in evidence)
    reasons = sorted(e.reason.split(": ", 1)[0] for e in evidence if e.kind != "cosign-tag")
    assert reasons == sorted([CYCLONEDX, VULN, VSA])
    assert any(e.kind == "cosign-tag" for e in evidence)
    vsa = next(e for e in evidence if e.reason.startswith(VSA))
    envelope = json.loads(vsa.payload)
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["policy"]["digest"] == {"sha256": "2e" * 32}
    assert predicate["verifier"]["version"]["trivy-db"] == "2026-11-01T00:00:00+00:00"
    uris = {i["uri"] for i in predicate["inputAttestations"]}
    assert uris == {f"in-toto:{CYCLONEDX}", f"in-toto:{VULN}", "trivy-db:trivy.db"}


def test_after_deny_only_a_failed_vsa_is_issued(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ed25519"]
    issue_for_outcome(env.store, *_outcome(env, "deny", ()), signer, mode="referrers")
    (vsa,) = env.verify(signer)
    assert vsa.verified and vsa.kind == "attestation:referrer" and vsa.reason.startswith(VSA)
    bundle = json.loads(vsa.payload)
    statement_ = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement_["predicate"]["verificationResult"] == "FAILED"


def test_key_bundle_with_message_signature_over_the_manifest(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ecdsa-p384"]
    bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json"

    def bundle(signature: bytes) -> bytes:
        document = {
            "mediaType": bundle_type,
            "verificationMaterial": {"publicKey": {"hint": signer.key_id}},
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(hashlib.sha256(env.manifest).digest()).decode(),
                },
                "signature": base64.b64encode(signature).decode(),
            },
        }
        return json.dumps(document).encode()

    good = bundle(signer.sign(env.manifest))
    env.store.attach_referrer(env.target, bundle_type, good, bundle_type, {})
    (result,) = env.verify(signer)
    assert result.verified and result.kind == "sigstore-bundle" and result.payload == good
    forged = bundle(signer.sign(env.manifest + b" "))
    env.store.attach_referrer(env.target, bundle_type, forged, bundle_type, {"n": "2"})
    results = {r.payload: r for r in env.verify(signer)}
    assert not results[forged].verified
    assert results[forged].reason == "message signature does not verify with any trusted key"


def test_certificate_signature_is_checked_against_identity_policy_and_fails_closed(
    env: Env, signers: dict[str, KeyFileSigner]
) -> None:
    signer = signers["ecdsa-p256"]
    payload = build_payload(f"{env.target.registry}/{env.target.repository}", env.target.digest)
    notes = {
        SIGNATURE_ANNOTATION: base64.b64encode(signer.sign(payload)).decode(),
        "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
        "CERTIFICATE-----\n",
    }
    env.store.attach_to_tag(env.target, "sig", payload, SIMPLESIGNING_TYPE, notes)
    (no_policy,) = env.verify(signer)
    assert not no_policy.verified
    assert no_policy.reason == "certificate-signed, not verified: no identity policy configured"
    policy = IdentityPolicy(identity="dev@example.com", issuer="https://accounts.example.com")
    (checked,) = env.verify(identities=(policy,))
    assert not checked.verified and checked.reason and checked.signer is None
