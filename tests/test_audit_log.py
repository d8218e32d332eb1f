"""The tamper-evident log on PostgreSQL and SQLite: facts become leaves in their own transaction,
concurrent appends stay gap-free, and rows edited, deleted, inserted or reordered behind the log's
back (in the log or in the fact tables) are named by ``audit verify``; exported proofs verify
with the public key alone and fail after any change."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from supplychain.access.tokens import TokenStore
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.recorder import record_tag, record_verdict, upsert_image
from supplychain.evidence.tlogcheck import (
    AuditLogError,
    check_proof,
    make_checkpoint,
    prove,
    verify,
)
from supplychain.interface import ImageTarget, Verdict
from supplychain.signatures.keys import encrypt_private_key, public_pem
from supplychain.signatures.signer import KeyFileSigner
from tests.conftest import truncate

TARGET = ImageTarget("registry.test", "team/app", "sha256:" + "a" * 64, "v1")
SIGNER = KeyFileSigner(ec.generate_private_key(ec.SECP256R1()))
ORIGIN = "audit.example.test/supplychain"


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[Database]:
    database = Database(pg_url if request.param == "postgresql" else f"sqlite:///{tmp_path}/a.db")
    if database.is_postgres:
        truncate(database)
    else:
        database.upgrade()
    yield database
    database.dispose()


def _verdict(decision: str) -> Verdict:
    return Verdict(decision, ("because",), "default", "sha256:" + "b" * 64, models.utcnow())  # type: ignore[arg-type]


def record_facts(db: Database) -> None:
    """Facts as the service writes them: a token, a tag, an image, a scan and its finding,
    two verdicts with their audit rows, then a revoked token (an update is a new leaf)."""
    tokens = TokenStore(db, None)
    tokens.create("admin-1", "admin", actor="test")
    with db.session(write=True) as session:
        record_tag(session, TARGET, "v1", source="test")
        image = upsert_image(
            session, TARGET, media_type="application/vnd.oci.image.manifest.v1+json"
        )
        scan = models.Scan(image_id=image.id, scanner="trivy", scanner_version="0.58", report=b"{}")
        session.add(scan)
        session.flush()
        session.add(
            models.Finding(
                scan_id=scan.id, image_id=image.id, vuln_id="CVE-2024-0001", package="zlib",
                installed="1.2", severity="HIGH",
            )
        )  # fmt: skip
        for decision in ("deny", "allow"):
            record_verdict(
                session, _verdict(decision), image=image, scan_id=scan.id, context="pipeline"
            )
            audit(session, "test", "verdict", TARGET.pinned, decision=decision)
    tokens.revoke("admin-1", actor="test")


def named(db: Database) -> set[tuple[str, str]]:
    return {(p.table, p.key) for p in verify(db, SIGNER.public_key).problems}


def leaf_of(db: Database, table: str, key: int) -> int:
    with db.session() as session:
        return int(
            session.scalars(
                select(models.LogLeaf.idx)
                .where(models.LogLeaf.table_name == table, models.LogLeaf.row_key == str(key))
                .order_by(models.LogLeaf.idx.desc())
            ).first()
            or 0
        )


def tamper(db: Database, *statements: str) -> None:
    """Run SQL straight on the database, past the append-only triggers, as a DBA could."""
    with db.engine.connect() as conn:
        if db.is_postgres:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS log_leaves_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS log_leaves_no_delete")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.commit()


def test_every_fact_is_a_leaf_and_a_clean_log_verifies(db: Database) -> None:
    record_facts(db)
    make_checkpoint(db, SIGNER, ORIGIN)
    report = verify(db, SIGNER.public_key)
    assert report.problems == ()
    with db.session() as session:
        tables = set(session.scalars(select(models.LogLeaf.table_name)))
        revoked = session.scalars(
            select(models.LogLeaf.idx).where(models.LogLeaf.table_name == "api_tokens")
        ).all()
    assert tables == {"api_tokens", "tags", "images", "scans", "verdicts", "audit_log"}
    assert len(revoked) == 2  # created, then revoked: two versions of one row
    # 11 rows: a token, a tag, an image, a scan, 2 verdicts, 5 audit rows; the token twice
    assert report.checkpoints == 1 and report.rows == 11 and report.leaves == 12


def test_a_fact_written_in_a_rolled_back_transaction_leaves_no_leaf(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session(write=True) as session:
        audit(session, "test", "doomed", None)
        session.flush()
        raise RuntimeError("roll back")
    with db.session(write=True) as session:
        audit(session, "test", "kept", None)
    with db.session() as session:
        assert session.scalars(select(models.LogLeaf.idx)).all() == [0]
    assert verify(db, None).problems == ()


ZEROS, ONES = "0" * 64, "1" * 64
FORGED_VERDICT = (
    "INSERT INTO verdicts (id, image_id, context, decision, reasons, policy, policy_digest, "
    "evaluated_at) VALUES (3, 1, 'gate', 'allow', '[]', 'default', 'sha256:00', "
    "'2026-01-01 00:00:00')"
)
SCENARIOS: dict[str, tuple[list[str], set[tuple[str, str]]]] = {
    # name: (SQL run behind the log's back, with {v1} {v2} {t1} the leaves of verdicts 1 and 2
    # and of token 1; what verify must name)
    "edit a verdict": (
        ["UPDATE verdicts SET decision = 'allow' WHERE id = 1"],
        {("verdicts", "1")},
    ),
    "delete a verdict": (["DELETE FROM verdicts WHERE id = 2"], {("verdicts", "2")}),
    "insert a verdict": ([FORGED_VERDICT], {("verdicts", "3")}),
    "reorder verdicts": (
        [
            "UPDATE verdicts SET id = 100 WHERE id = 1",
            "UPDATE verdicts SET id = 1 WHERE id = 2",
            "UPDATE verdicts SET id = 2 WHERE id = 100",
        ],
        {("verdicts", "1"), ("verdicts", "2")},
    ),
    "edit a finding of a scan": (["UPDATE findings SET severity = 'LOW'"], {("scans", "1")}),
    "edit the audit log": (
        ["UPDATE audit_log SET actor = 'mallory' WHERE id = 1"],
        {("audit_log", "1")},
    ),
    "edit a leaf": (
        ["UPDATE log_leaves SET leaf_hash = '" + ZEROS + "' WHERE idx = {v1}"],  # noqa: S608 - constants
        {("verdicts", "1")},
    ),
    "delete a leaf": (
        ["DELETE FROM log_leaves WHERE idx = {v2}"],
        {("log_leaves", "{v2}"), ("verdicts", "2")},
    ),
    "insert a leaf": (
        [  # make room by renumbering the later leaves, then forge one in the gap
            "UPDATE log_leaves SET idx = idx + 1000000 WHERE idx >= {v1}",
            "UPDATE log_leaves SET idx = idx - 999999 WHERE idx >= 1000000",
            "INSERT INTO log_leaves (idx, table_name, row_key, leaf_hash) "
            "VALUES ({v1}, 'verdicts', '1', '" + ONES + "')",
        ],
        {("verdicts", "1"), ("verdicts", "2")},
    ),
    "reorder leaves": (
        [
            "UPDATE log_leaves SET idx = 1000 WHERE idx = {v1}",
            "UPDATE log_leaves SET idx = {v1} WHERE idx = {v2}",
            "UPDATE log_leaves SET idx = {v2} WHERE idx = 1000",
        ],
        {("verdicts", "1"), ("verdicts", "2")},
    ),
    "truncate the log's end": (
        ["DELETE FROM log_leaves WHERE idx >= {t1}"],
        {("log_leaves", "{t1}"), ("api_tokens", "1")},
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_audit_verify_names_what_was_tampered_with(db: Database, scenario: str) -> None:
    record_facts(db)
    make_checkpoint(db, SIGNER, ORIGIN)
    assert named(db) == set()
    leaves = {
        "v1": leaf_of(db, "verdicts", 1),
        "v2": leaf_of(db, "verdicts", 2),
        "t1": leaf_of(db, "api_tokens", 1),
    }
    statements, names = SCENARIOS[scenario]
    tamper(db, *(statement.format(**leaves) for statement in statements))
    expected = {(table, key.format(**leaves)) for table, key in names}
    found = named(db)
    assert expected <= found, found
    if "leaf" in scenario or "log's end" in scenario:  # the signed root no longer matches either
        assert any(table == "log_leaves" for table, _ in found), found


def test_concurrent_appends_are_serialised_without_gaps(db: Database) -> None:
    def write(worker: int) -> None:
        for n in range(8):
            with db.session(write=n % 2 == 0) as session:
                record_verdict(session, _verdict("deny"), image=None, scan_id=None, context="gate")
                audit(session, f"w{worker}", "gate.answered", None, n=n)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))
    with db.session() as session:
        indexes = session.scalars(select(models.LogLeaf.idx).order_by(models.LogLeaf.idx)).all()
    assert indexes == list(range(6 * 8 * 2))
    assert verify(db, None).problems == ()


@pytest.fixture
def proof(db: Database) -> dict[str, object]:
    record_facts(db)
    make_checkpoint(db, SIGNER, ORIGIN)
    return prove(db, "verdicts:1")


def test_an_exported_proof_verifies_with_the_public_key_alone(proof: dict[str, object]) -> None:
    fact = check_proof(proof, SIGNER.public_key, ORIGIN)
    assert fact["table"] == "verdicts" and fact["key"] == "1"
    assert fact["row"]["decision"] == "deny"  # type: ignore[index]


def _changed(proof: dict[str, object], how: str) -> dict[str, object]:
    bad = copy.deepcopy(proof)
    if how == "leaf":
        bad["leaf_data"] = str(bad["leaf_data"]).replace('"deny"', '"allow"')
    elif how == "path":
        path = list(bad["inclusion_proof"])  # type: ignore[call-overload]
        blob = bytearray(base64.b64decode(path[0]))
        blob[0] ^= 1
        path[0] = base64.b64encode(bytes(blob)).decode()
        bad["inclusion_proof"] = path
    elif how == "index":
        bad["leaf_index"] = int(str(bad["leaf_index"])) + 1
    elif how == "checkpoint body":
        lines = str(bad["checkpoint"]).split("\n")
        lines[1] = str(int(lines[1]) + 1)
        bad["checkpoint"] = "\n".join(lines)
        bad["tree_size"] = int(lines[1])
    elif how == "signature":
        text, _, line = str(bad["checkpoint"]).rstrip("\n").rpartition(" ")
        blob = bytearray(base64.b64decode(line))
        blob[-5] ^= 1
        bad["checkpoint"] = f"{text} {base64.b64encode(bytes(blob)).decode()}\n"
    return bad


@pytest.mark.parametrize("how", ["leaf", "path", "index", "checkpoint body", "signature"])
def test_a_proof_changed_anywhere_fails(proof: dict[str, object], how: str) -> None:
    with pytest.raises(AuditLogError):
        check_proof(_changed(proof, how), SIGNER.public_key)


def test_check_proof_command_needs_no_database(proof: dict[str, object], tmp_path: Path) -> None:
    good, bad, pub = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "log.pub"
    good.write_text(json.dumps(proof))
    bad.write_text(json.dumps(_changed(proof, "path")))
    pub.write_bytes(public_pem(SIGNER.public_key))
    env = {
        "PATH": os.environ["PATH"],
        "SUPPLYCHAIN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    run = [sys.executable, "-m", "supplychain.cli", "audit", "check-proof"]
    ok = subprocess.run(
        [*run, str(good), "--key", str(pub)], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "OK: leaf" in ok.stdout, ok.stderr
    refused = subprocess.run(
        [*run, str(bad), "--key", str(pub)], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "INVALID" in refused.stdout


def test_commands_checkpoint_prove_and_verify_on_sqlite(tmp_path: Path) -> None:
    key, pub = tmp_path / "log.key", tmp_path / "log.pub"
    key.write_bytes(encrypt_private_key(SIGNER._key, b"pw"))
    pub.write_bytes(public_pem(SIGNER.public_key))
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {
        "PATH": os.environ["PATH"], "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
        "SUPPLYCHAIN_DATABASE_URL": url, "SUPPLYCHAIN_KEY_PASSWORD": "pw",
        "SUPPLYCHAIN_SIGN_KEY": str(key),
    }  # fmt: skip
    cli = [sys.executable, "-m", "supplychain.cli"]

    def run(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *words], env=env, capture_output=True, text=True)

    assert run("tokens", "create", "--role", "ci", "--name", "ci-1").returncode == 0
    signed = run("audit", "checkpoint", "--origin", ORIGIN)
    assert signed.returncode == 0 and signed.stdout.startswith(f"{ORIGIN}\n2\n"), signed.stderr
    assert (
        run("audit", "prove", "api_tokens:1", "--output", str(tmp_path / "p.json")).returncode == 0
    )
    assert run("audit", "check-proof", str(tmp_path / "p.json"), "--key", str(pub)).returncode == 0
    assert run("audit", "verify").returncode == 0
    db = Database(url)
    tamper(db, "UPDATE api_tokens SET role = 'admin' WHERE id = 1")
    db.dispose()
    tampered = run("audit", "verify")
    assert tampered.returncode == 1 and "TAMPERED api_tokens 1:" in tampered.stdout


def test_policy_and_waiver_changes_are_facts_of_the_log(db: Database) -> None:
    from datetime import timedelta

    from supplychain.decide import waiverstore
    from supplychain.evidence.dbutil import record_policy

    now = models.utcnow()
    request = waiverstore.WaiverRequest(
        owner="alice", reason="not reachable", ticket="SEC-1", expires_at=now + timedelta(days=9),
        digest=TARGET.digest, cve="CVE-2024-0001",
    )  # fmt: skip
    with db.session(write=True) as session:
        assert record_policy(session, "serve", "default", "sha256:" + "1" * 64)
        waiver = waiverstore.create(session, request, "alice", now)
    with db.session(write=True) as session:
        assert not record_policy(session, "serve", "default", "sha256:" + "1" * 64)  # unchanged
        assert record_policy(session, "serve", "strict", "sha256:" + "2" * 64)
        waiverstore.revoke(session, int(waiver["id"]), "bob", now)
    with db.session() as session:
        logged = session.execute(
            select(models.LogLeaf.table_name, models.LogLeaf.row_key).order_by(models.LogLeaf.idx)
        ).all()
    assert [tuple(r) for r in logged if r[0] == "waivers"] == [("waivers", "1"), ("waivers", "1")]
    assert len([r for r in logged if r[0] == "audit_log"]) == 4  # 2 policies, create, revoke
    assert verify(db, None).problems == ()
    tamper(db, "UPDATE waivers SET revoked_at = NULL, revoked_by = NULL")  # un-revoke it
    assert named(db) == {("waivers", "1")}


def test_the_upgrade_logs_the_facts_already_stored(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/old.db")
    db.upgrade("0009")  # before the log: facts written with plain SQL, no hook to see them
    with db.engine.connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO verdicts (context, decision, reasons, policy, policy_digest, "
            "evaluated_at) VALUES ('gate', 'deny', '[\"old\"]', 'default', 'sha256:00', "
            "'2026-01-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO audit_log (at, actor, action, details) "
            "VALUES ('2026-01-01 00:00:00', 'gate', 'gate.answered', '{}')"
        )
        conn.commit()
    db.upgrade()
    with db.session() as session:
        logged = session.execute(select(models.LogLeaf.table_name, models.LogLeaf.row_key)).all()
    assert sorted(tuple(r) for r in logged) == [("audit_log", "1"), ("verdicts", "1")]
    assert verify(db, None).problems == ()
    tamper(db, "UPDATE verdicts SET decision = 'allow'")
    assert named(db) == {("verdicts", "1")}
    db.dispose()
