"""Checkpoints witnessed in a real OCI registry (Debian's distribution): someone who rewrites
the log's end *and* the checkpoints kept in the database passes the database-only checks, and
is caught by the copy in the registry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from supplychain.evidence.database import Database
from supplychain.evidence.tlogcheck import check_witnessed, make_checkpoint, verify
from supplychain.evidence.witness import ARTIFACT_TYPE, fetch_witnessed, push_checkpoint
from supplychain.registry import BlobCache, RegistryClient
from supplychain.signatures.keys import encrypt_private_key, public_pem
from tests.support.registry import Registry
from tests.test_audit_log import ORIGIN, SIGNER, leaf_of, record_facts, tamper


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def test_a_rewrite_the_database_cannot_show_is_caught_by_the_witness(
    registry: Registry, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path}/w.db")
    db.upgrade()
    record_facts(db)  # ends with the token's revocation: a new api_tokens leaf and an audit row
    client = RegistryClient(
        frozenset({registry.host}), frozenset(), BlobCache(tmp_path / "c", 10**8)
    )
    repository = f"{registry.host}/audit/checkpoints"
    signed = make_checkpoint(db, SIGNER, ORIGIN)
    push_checkpoint(client, repository, signed)
    manifest = requests.get(
        f"{registry.url}/v2/audit/checkpoints/manifests/size-{signed.size}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    assert manifest["artifactType"] == ARTIFACT_TYPE
    witnessed = fetch_witnessed(client, repository, SIGNER.public_key)
    assert witnessed is not None and witnessed.note == signed.note
    assert check_witnessed(db, witnessed, repository) is None
    # Un-revoke the token and erase every trace: its later leaves, its audit row, the checkpoints.
    revoked = min(leaf_of(db, "api_tokens", 1), leaf_of(db, "audit_log", 5))  # the last two
    tamper(
        db,
        "DROP TRIGGER IF EXISTS audit_log_no_delete",
        "UPDATE api_tokens SET revoked_at = NULL",
        f"DELETE FROM log_leaves WHERE idx >= {revoked}",  # noqa: S608 - an int
        "DELETE FROM audit_log WHERE action = 'token.revoked'",
        "DELETE FROM log_checkpoints",
    )
    assert verify(db, SIGNER.public_key).problems == ()  # the database alone agrees with itself
    problem = check_witnessed(db, witnessed, repository)
    assert (
        problem is not None and problem.table == "log_leaves" and "leaves deleted" in problem.what
    )
    db.dispose()


def test_checkpoint_and_verify_commands_with_a_witness(registry: Registry, tmp_path: Path) -> None:
    key, pub = tmp_path / "log.key", tmp_path / "log.pub"
    key.write_bytes(encrypt_private_key(SIGNER._key, b"pw"))
    pub.write_bytes(public_pem(SIGNER.public_key))
    env = {
        "PATH": os.environ["PATH"], "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
        "SUPPLYCHAIN_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "SUPPLYCHAIN_KEY_PASSWORD": "pw", "SUPPLYCHAIN_SIGN_KEY": str(key),
    }  # fmt: skip
    repository = f"{registry.host}/audit/cli"

    def run(*words: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "supplychain.cli", *words]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    assert run("tokens", "create", "--role", "ci", "--name", "ci-1").returncode == 0
    done = run("audit", "checkpoint", "--origin", ORIGIN, "--witness", repository)
    assert done.returncode == 0 and f"witnessed at {repository}@sha256:" in done.stderr, done.stderr
    assert run("audit", "verify", "--witness", repository).returncode == 0
    tamper(
        Database(env["SUPPLYCHAIN_DATABASE_URL"]),
        "DELETE FROM log_leaves",
        "DELETE FROM log_checkpoints",
        "DROP TRIGGER IF EXISTS audit_log_no_delete",
        "DELETE FROM audit_log",
        "DELETE FROM api_tokens",
    )
    caught = run("audit", "verify", "--witness", repository)
    assert caught.returncode == 1 and "TAMPERED log_leaves" in caught.stdout, caught.stdout
