"""``supplychain audit verify|checkpoint|prove|check-proof``: the tamper-evident log.

``verify`` exits 1 when anything is tampered with (each finding names its table and key), 0 when
the log, the checkpoints and the fact tables agree, 2 on errors. ``check-proof`` needs no
database: the proof file and the public key are enough. Keys as in ``supplychain sign``: the
private key's password comes from ``SUPPLYCHAIN_KEY_PASSWORD`` (or ``COSIGN_PASSWORD``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

__all__ = ["add_parser"]

EXIT_TAMPERED = 1
EXIT_OTHER = 2


def _fail(message: str) -> int:
    print(f"supplychain: {message}", file=sys.stderr)
    return EXIT_OTHER


def _database() -> object:
    from supplychain.cli.main import _migrate, _settings
    from supplychain.evidence.database import Database

    settings = _settings(writable=False)
    _migrate(settings, required=True)
    return Database(settings.database_url)


def _signing_key(path: str | None) -> str | None:
    from supplychain.cli.main import _settings

    return path or _settings(writable=False).sign_key


def _registry_client(repository: str) -> object:
    """A registry client allowed to reach the witness repository's registry only."""
    from supplychain.cli.main import _settings
    from supplychain.evidence.witness import witness_target
    from supplychain.registry import BlobCache, RegistryClient, docker_credentials

    settings = _settings(writable=False)
    return RegistryClient(
        allowed=frozenset({witness_target(repository).registry}),
        insecure=settings.insecure_registries,
        cache=BlobCache(settings.data_dir / "blobs", settings.blob_cache_bytes),
        credentials=docker_credentials(),
        redirect_hosts=settings.registry_redirect_hosts,
    )


def _witnessed(db: object, repository: str, key: object) -> list[str]:
    """Problems found comparing the log with the checkpoint witnessed at ``repository``."""
    from supplychain.evidence.database import Database
    from supplychain.evidence.tlogcheck import check_witnessed
    from supplychain.evidence.witness import WitnessError, fetch_witnessed
    from supplychain.registry import RegistryClient
    from supplychain.signatures.keys import PublicKey

    assert isinstance(db, Database) and isinstance(key, PublicKey)  # noqa: S101 - callers' types
    client = _registry_client(repository)
    assert isinstance(client, RegistryClient)  # noqa: S101 - made above
    try:
        witnessed = fetch_witnessed(client, repository, key)
    except WitnessError as exc:
        return [f"log_checkpoints {repository}: {exc}"]
    if witnessed is None:
        return [f"log_checkpoints {repository}: no checkpoint witnessed there"]
    problem = check_witnessed(db, witnessed, repository)
    return [str(problem)] if problem else []


def cmd_verify(args: argparse.Namespace) -> int:
    from supplychain.evidence.database import Database
    from supplychain.evidence.tlogcheck import verify
    from supplychain.signatures.keys import KeyFileError, PublicKey, load_public_key
    from supplychain.signatures.signer import SignerError, signer_for

    key: PublicKey | None = None
    try:
        if args.key:
            key = load_public_key(Path(args.key).read_bytes())
        elif (private := _signing_key(None)) is not None:
            key = signer_for(private).public_key
    except (OSError, KeyFileError, SignerError) as exc:
        return _fail(f"--key: {exc}")
    db = _database()
    assert isinstance(db, Database)  # noqa: S101 - _database makes one
    if args.witness and key is None:
        return _fail("--witness needs the log's public key (--key or SUPPLYCHAIN_SIGN_KEY)")
    report = verify(db, key)
    problems = [str(p) for p in report.problems]
    if args.witness:
        problems += _witnessed(db, args.witness, key)
    for problem in problems:
        print(f"TAMPERED {problem}")
    signed = "" if key else " (signatures not checked: no --key or SUPPLYCHAIN_SIGN_KEY)"
    print(
        f"{report.leaves} leaves, {report.rows} fact rows, {report.checkpoints} checkpoints "
        f"recomputed{signed}: "
        + (f"{len(problems)} problems" if problems else "the log and facts agree"),
        file=sys.stderr,
    )
    return EXIT_TAMPERED if problems else 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from supplychain.evidence.database import Database
    from supplychain.evidence.tlogcheck import AuditLogError, make_checkpoint
    from supplychain.signatures.signer import SignerError, signer_for

    private = _signing_key(args.key)
    if private is None:
        return _fail("a checkpoint is signed with --key or SUPPLYCHAIN_SIGN_KEY")
    try:
        signer = signer_for(private)
    except SignerError as exc:
        return _fail(str(exc))
    db = _database()
    assert isinstance(db, Database)  # noqa: S101 - _database makes one
    try:
        signed = make_checkpoint(db, signer, args.origin)
    except AuditLogError as exc:
        if args.origin is None and "origin" in str(exc):
            signed = make_checkpoint(db, signer, f"{socket.getfqdn()}/supplychain")
        else:
            return _fail(str(exc))
    sys.stdout.write(signed.note)
    if args.witness:
        from supplychain.evidence.witness import WitnessError, push_checkpoint
        from supplychain.registry import RegistryClient

        client = _registry_client(args.witness)
        assert isinstance(client, RegistryClient)  # noqa: S101 - made by _registry_client
        try:
            digest = push_checkpoint(client, args.witness, signed)
        except WitnessError as exc:
            return _fail(f"checkpoint stored but not witnessed: {exc}")
        print(f"witnessed at {args.witness}@{digest}", file=sys.stderr)
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from supplychain.evidence.database import Database
    from supplychain.evidence.tlogcheck import AuditLogError, prove

    db = _database()
    assert isinstance(db, Database)  # noqa: S101 - _database makes one
    try:
        document = prove(db, args.id)
    except AuditLogError as exc:
        return _fail(str(exc))
    text = json.dumps(document, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_check_proof(args: argparse.Namespace) -> int:
    from supplychain.evidence.tlogcheck import AuditLogError, check_proof
    from supplychain.signatures.keys import KeyFileError, load_public_key

    try:
        key = load_public_key(Path(args.key).read_bytes())
        document = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, KeyFileError, ValueError) as exc:
        return _fail(f"cannot read the proof or the key: {exc}")
    try:
        fact = check_proof(document, key, args.origin)
    except AuditLogError as exc:
        print(f"INVALID: {exc}")
        return EXIT_TAMPERED
    print(f"OK: leaf {fact['index']} ({fact.get('table')} {fact.get('key')}) is in the signed log")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` and its subcommands."""
    audit = sub.add_parser("audit", help="the tamper-evident log: verify, checkpoint, prove")
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="recompute the log and every fact row; exit 1 naming what was tampered with"
    )
    verify.add_argument(
        "--key", help="public key PEM checking the checkpoints (default: SUPPLYCHAIN_SIGN_KEY's)"
    )
    verify.add_argument(
        "--witness", help="also compare with the checkpoint witnessed at this HOST/REPOSITORY"
    )
    verify.set_defaults(func=cmd_verify)
    checkpoint = actions.add_parser("checkpoint", help="sign and store the log's current root")
    checkpoint.add_argument(
        "--key", help="Ed25519 or ECDSA P-256 private key (default SUPPLYCHAIN_SIGN_KEY)"
    )
    checkpoint.add_argument(
        "--origin", help="the log's name (default: the last checkpoint's, else HOST/supplychain)"
    )
    checkpoint.add_argument(
        "--witness",
        help="also push the checkpoint to this OCI HOST/REPOSITORY (tag size-N, latest)",
    )
    checkpoint.set_defaults(func=cmd_checkpoint)
    prove = actions.add_parser(
        "prove", help="export a leaf's inclusion proof with the checkpoint covering it (JSON)"
    )
    prove.add_argument("id", help="a leaf index, or TABLE:KEY for a row's latest leaf")
    prove.add_argument("--output", help="write the proof to this file (default stdout)")
    prove.set_defaults(func=cmd_prove)
    check = actions.add_parser(
        "check-proof", help="verify an exported proof with the public key alone (no database)"
    )
    check.add_argument("file", help="the proof JSON written by `audit prove`")
    check.add_argument("--key", required=True, help="the log's public key PEM")
    check.add_argument("--origin", help="the log name the checkpoint must carry")
    check.set_defaults(func=cmd_check_proof)
