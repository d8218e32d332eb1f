"""``supplychain keys generate``, ``sign``, ``attest`` and ``verify``, with cosign's flags.

``--key`` is a key file (cosign's encrypted ``cosign.key``, or PEM) for ``sign``/``attest`` and a
public key PEM for ``verify``; ``hashivault://NAME`` signs with Vault's transit engine
(``VAULT_ADDR``, ``VAULT_TOKEN``), as cosign's KMS URIs do. Without ``--key``, ``sign`` and
``attest`` sign keyless with the OIDC token in ``--identity-token`` / ``SIGSTORE_ID_TOKEN`` or the
CI's ambient credentials. Key passwords come from ``SUPPLYCHAIN_KEY_PASSWORD`` (or cosign's
``COSIGN_PASSWORD``), never from the command line. Exit codes: 0 success (``verify``: at least one
verified signature), 1 nothing verified, 2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

PREDICATE_SHORTHANDS = {
    "cyclonedx": "https://cyclonedx.org/bom",
    "spdxjson": "https://spdx.dev/Document",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns/v0.2.0",
    "vsa": "https://slsa.dev/verification_summary/v1",
}
"""cosign's ``--type`` shorthands we know; anything else must be a URI."""
EXIT_OK, EXIT_UNVERIFIED, EXIT_ERROR = 0, 1, 2


class _Fail(Exception):
    """A user-facing error: printed to stderr, exit code 2."""


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from supplychain.signatures import encrypt_private_key, generate_key, key_id, public_pem
    from supplychain.signatures.signer import key_password

    password = key_password()
    if not password:
        raise _Fail("set SUPPLYCHAIN_KEY_PASSWORD: the private key is never written unencrypted")
    private_path = Path(f"{args.output_prefix}.key")
    public_path = Path(f"{args.output_prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise _Fail(f"{path} exists; refusing to overwrite it")
    key = generate_key(args.type)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(encrypt_private_key(key, password))
    public_path.write_bytes(public_pem(key))
    print(f"Private key written to {private_path}\nPublic key written to {public_path}")
    print(f"key id: {key_id(key)}")
    return EXIT_OK


def _client(image: str) -> tuple[Any, Any, bytes]:
    """A registry client allowed to reach ``image``'s registry, its target and manifest bytes."""
    from supplychain.config import ConfigError, load_settings
    from supplychain.interface import ImageTarget
    from supplychain.reference import ReferenceError, parse_reference
    from supplychain.registry import BlobCache, RegistryClient, RegistryError, docker_credentials

    try:
        ref = parse_reference(image)
        settings = load_settings()
    except (ReferenceError, ConfigError) as exc:
        raise _Fail(str(exc)) from None
    client = RegistryClient(
        allowed=frozenset({ref.registry}),
        insecure=settings.insecure_registries,
        cache=BlobCache(settings.data_dir / "blobs", settings.blob_cache_bytes),
        credentials=docker_credentials(),
        redirect_hosts=settings.registry_redirect_hosts,
    )
    try:
        manifest = client.get_manifest(ref.registry, ref.repository, ref.reference)
    except RegistryError as exc:
        raise _Fail(f"cannot resolve {image}: {exc}") from None
    return (
        client,
        ImageTarget(ref.registry, ref.repository, manifest.digest, ref.tag),
        manifest.data,
    )


def _signer(args: argparse.Namespace) -> Any:
    from supplychain.signatures import KeylessSigner
    from supplychain.signatures.signer import signer_for

    if args.key:
        return signer_for(args.key)
    token = args.identity_token or os.environ.get("SIGSTORE_ID_TOKEN")
    trust = Path(args.trust_config) if args.trust_config else None
    return KeylessSigner(token, trust) if token else KeylessSigner.ambient(trust)


def cmd_sign(args: argparse.Namespace) -> int:
    from supplychain.signatures import sign_image
    from supplychain.signatures.storage import SignatureStore

    annotations = dict(_pairs(args.annotations))
    client, target, _ = _client(args.image)
    try:
        written = sign_image(
            SignatureStore(client), target, _signer(args), mode=args.mode, annotations=annotations
        )
    finally:
        client.close()
    for digest in written:
        print(
            f"Pushed signature {target.registry}/{target.repository}@{digest} for {target.digest}"
        )
    return EXIT_OK


def cmd_attest(args: argparse.Namespace) -> int:
    from supplychain.signatures import attest_image
    from supplychain.signatures.statements import statement
    from supplychain.signatures.storage import SignatureStore

    predicate_type = PREDICATE_SHORTHANDS.get(args.type, args.type)
    if "://" not in predicate_type:
        raise _Fail(f"--type {args.type!r}: not a known shorthand nor a URI")
    try:
        predicate = json.loads(Path(args.predicate).read_bytes())
    except (OSError, ValueError) as exc:
        raise _Fail(f"--predicate {args.predicate}: not readable JSON: {exc}") from None
    client, target, _ = _client(args.image)
    try:
        claim = statement(target, predicate_type, predicate)
        signer = _signer(args)
        written = attest_image(
            SignatureStore(client), target, signer, claim, predicate_type, mode=args.mode
        )
    finally:
        client.close()
    for digest in written:
        print(
            f"Pushed attestation {target.registry}/{target.repository}@{digest} ({predicate_type})"
        )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from supplychain.signatures.sigstore_verify import IdentityPolicy
    from supplychain.stages.verifier import SignatureVerifier, TrustPolicy

    identities = IdentityPolicy.from_flags(
        args.certificate_identity,
        args.certificate_identity_regexp,
        args.certificate_oidc_issuer,
        args.certificate_oidc_issuer_regexp,
    )
    if not args.key and not identities:
        raise _Fail("give --key or --certificate-identity(-regexp): nothing to verify against")
    trust = TrustPolicy.from_key_files(
        [Path(path) for path in args.key or []],
        identities=identities,
        allowed_references=frozenset(args.allow_reference or ()),
        require_known_predicates=args.require_known_predicates,
        trusted_root=Path(args.trusted_root) if args.trusted_root else None,
    )
    client, target, manifest = _client(args.image)
    try:
        evidence = SignatureVerifier(client, trust).verify_target(target, manifest)
    finally:
        client.close()
    signed = any(e.verified and not e.kind.startswith("attestation:") for e in evidence)
    if args.output == "json":
        rows = [
            {k: v for k, v in vars(e).items() if k != "payload"} | {"payload_size": len(e.payload)}
            for e in evidence
        ]
        print(json.dumps({"image": target.pinned, "verified": signed, "evidence": rows}, indent=2))
    else:
        print(f"{target.pinned}: {'verified' if signed else 'NOT verified'}")
        for e in evidence:
            mark = "ok  " if e.verified else "FAIL"
            print(f"  {mark} {e.kind:<22} {e.signer or '-'}: {e.reason}")
    return EXIT_OK if signed else EXIT_UNVERIFIED


def _pairs(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise _Fail(f"-a {value!r}: expected key=value")
        pairs.append((name, text))
    return pairs


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from supplychain.interface import VerifyError
        from supplychain.registry import RegistryError
        from supplychain.signatures import KeyFileError, SignerError
        from supplychain.signatures.storage import StorageError

        errors = (_Fail, KeyFileError, SignerError, StorageError, RegistryError, VerifyError)
        try:
            code: int = func(args)
        except (*errors, OSError) as exc:
            print(f"supplychain: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return code

    return run


def _issuer_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("image", help="host/repo:tag or host/repo@sha256:…")
    command.add_argument("--key", help="private key file (cosign.key or PEM) or hashivault://NAME")
    command.add_argument("--identity-token", help="OIDC token for keyless signing")
    command.add_argument("--trust-config", help="Sigstore ClientTrustConfig JSON (keyless)")
    command.add_argument(
        "--mode",
        choices=["tag", "referrers", "both"],
        default="tag",
        help="tag: cosign's .sig/.att tags; referrers: OCI 1.1 (tag-schema fallback); both",
    )


def add_parser(subparsers: Any) -> None:
    """Add ``keys``, ``sign``, ``attest`` and ``verify`` to the ``supplychain`` command."""
    keys = subparsers.add_parser("keys", help="manage signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="write P.key (encrypted) and P.pub")
    generate.add_argument(
        "--output-prefix", default="cosign", help="write PREFIX.key and PREFIX.pub (default cosign)"
    )
    generate.add_argument(
        "--type",
        choices=["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"],
        default="ecdsa-p256",
        help="key algorithm (default ecdsa-p256, as cosign)",
    )
    generate.set_defaults(func=_guarded(cmd_keys_generate))

    sign = subparsers.add_parser("sign", help="sign IMAGE (cosign-compatible)")
    _issuer_flags(sign)
    sign.add_argument("-a", "--annotations", action="append", help="key=value in the payload")
    sign.set_defaults(func=_guarded(cmd_sign))

    attest = subparsers.add_parser("attest", help="attach a signed in-toto attestation to IMAGE")
    _issuer_flags(attest)
    attest.add_argument("--predicate", required=True, help="predicate JSON file")
    attest.add_argument("--type", required=True, help="predicate type URI or cosign shorthand")
    attest.set_defaults(func=_guarded(cmd_attest))

    verify = subparsers.add_parser("verify", help="check IMAGE's signatures and attestations")
    verify.add_argument("image", help="host/repo:tag or host/repo@sha256:…")
    verify.add_argument("--key", action="append", help="trusted public key PEM (repeatable)")
    verify.add_argument("--certificate-identity", help="keyless: the signer identity trusted")
    verify.add_argument(
        "--certificate-identity-regexp", help="keyless: identities trusted (full-match regexp)"
    )
    verify.add_argument("--certificate-oidc-issuer", help="keyless: the OIDC issuer trusted")
    verify.add_argument(
        "--certificate-oidc-issuer-regexp", help="keyless: OIDC issuers trusted (full-match regexp)"
    )
    verify.add_argument("--trusted-root", help="Sigstore trusted_root.json")
    verify.add_argument(
        "--insecure-ignore-tlog",
        action="store_true",
        help="accepted for cosign compatibility: key-signed signatures are checked without a log",
    )
    verify.add_argument("--allow-reference", action="append", help="other host/repo to accept")
    verify.add_argument(
        "--require-known-predicates",
        action="store_true",
        help="count attestations of unknown predicate types as failed",
    )
    verify.add_argument(
        "--output",
        choices=["table", "json"],
        default="table",
        help="table for people (default), json for machines",
    )
    verify.set_defaults(func=_guarded(cmd_verify))
