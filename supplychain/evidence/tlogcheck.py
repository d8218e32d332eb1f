"""Verify the tamper-evident log against the facts, sign checkpoints, prove and check inclusion.

``verify`` reads the database once, streaming: the leaves in index order (a gap is a deleted
leaf; the root of each prefix a checkpoint signed is recomputed and compared), then every fact
table, each row's leaf data recomputed and compared with the row's latest leaf (a row without
one was inserted behind the log's back, a leaf whose row is gone names a deleted row, a
different hash an edited or reordered one). Leaves are committed in index order under the
append lock, so any snapshot holds a gap-free prefix: checkpoints and proofs read without it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.merkle import (
    RootBuilder,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion_proof,
    tree_root,
)
from supplychain.evidence.tlog import LOGGED, leaf_data, rows_of
from supplychain.signatures.checkpoint import (
    Checkpoint,
    CheckpointError,
    parse_checkpoint,
    sign_checkpoint,
)
from supplychain.signatures.keys import PublicKey
from supplychain.signatures.signer import Signer

__all__ = [
    "PROOF_FORMAT",
    "AuditLogError",
    "Problem",
    "VerifyReport",
    "check_proof",
    "check_witnessed",
    "make_checkpoint",
    "prove",
    "verify",
]

PROOF_FORMAT = "supplychain-inclusion-proof/v1"
LEAVES = models.LogLeaf.__table__
CHECKPOINTS = models.LogCheckpoint.__table__


class AuditLogError(Exception):
    """A checkpoint or proof could not be made, or a proof does not verify."""


@dataclass(frozen=True)
class Problem:
    """One thing in the database the log does not vouch for."""

    table: str
    """The table holding it (``log_leaves`` for the log itself)."""
    key: str
    """The row's primary key (a leaf index or index range for ``log_leaves``)."""
    what: str
    """What is wrong, in words."""

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.what}"


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found."""

    leaves: int
    """Leaves in the log."""
    rows: int
    """Fact rows checked against their leaves."""
    checkpoints: int
    """Signed checkpoints whose root was recomputed."""
    problems: tuple[Problem, ...]
    """Every tampered row or leaf found (empty: the log and the facts agree)."""


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """A read-only connection seeing one consistent state of the database."""
    options = {"isolation_level": "REPEATABLE READ"} if db.is_postgres else {}
    with db.engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def _checkpoints(conn: Connection, key: PublicKey | None, problems: list[Problem]) -> list[Any]:
    """Stored checkpoints by size; each one's signature is checked when ``key`` is given."""
    rows = list(conn.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.size, CHECKPOINTS.c.id)))
    for row in rows:
        if key is None:
            continue
        try:
            signed = parse_checkpoint(row.note, key)
        except CheckpointError as exc:
            problems.append(Problem("log_checkpoints", str(row.id), str(exc)))
            continue
        if signed.size != row.size or signed.root.hex() != row.root_hash:
            problems.append(Problem("log_checkpoints", str(row.id), "differs from its signed note"))
    return rows


def verify(db: Database, key: PublicKey | None) -> VerifyReport:
    """Recompute the log from the database and compare it with the facts and the checkpoints."""
    problems: list[Problem] = []
    with _snapshot(db) as conn:
        checkpoints = _checkpoints(conn, key, problems)
        latest: dict[str, dict[str, tuple[int, str]]] = {name: {} for name in LOGGED}
        builder, expected, matched = RootBuilder(), 0, 0
        pending = iter(checkpoints)
        point = next(pending, None)
        query = select(LEAVES).order_by(LEAVES.c.idx).execution_options(yield_per=2000)
        for leaf in conn.execute(query):
            while point is not None and point.size <= builder.size:
                matched += _compare(point, builder, problems)
                point = next(pending, None)
            if leaf.idx != expected:
                what = "missing: deleted from the log (or the log was renumbered)"
                problems.append(Problem("log_leaves", _span(expected, leaf.idx - 1), what))
            expected = leaf.idx + 1
            try:
                hashed = bytes.fromhex(leaf.leaf_hash)
            except ValueError:
                hashed = b""
            if len(hashed) != 32:
                problems.append(Problem("log_leaves", str(leaf.idx), "leaf hash is not SHA-256"))
                hashed = bytes(32)
            builder.add(hashed)
            if leaf.table_name not in latest:
                problems.append(Problem("log_leaves", str(leaf.idx), "names no fact table"))
                continue
            latest[leaf.table_name][leaf.row_key] = (leaf.idx, leaf.leaf_hash)
        while point is not None:
            if point.size > builder.size:
                what = (
                    f"checkpoint {point.id} signed {point.size} leaves, the log holds "
                    f"{builder.size}: leaves deleted from its end"
                )
                problems.append(Problem("log_leaves", _span(builder.size, point.size - 1), what))
            else:
                matched += _compare(point, builder, problems)
            point = next(pending, None)
        rows = 0
        for name, leaves in latest.items():
            for key_text, row in rows_of(conn, name):
                rows += 1
                found = leaves.pop(key_text, None)
                if found is None:
                    what = "has no leaf in the log: inserted behind the log's back"
                    problems.append(Problem(name, key_text, what))
                    continue
                index, recorded = found
                data = leaf_data(conn, index, name, key_text, row=row)
                if not hmac.compare_digest(leaf_hash(data).hex(), recorded):
                    what = (
                        f"differs from its leaf {index}: the row was edited, replaced or "
                        "reordered behind the log's back (or that leaf was)"
                    )
                    problems.append(Problem(name, key_text, what))
            for key_text, (index, recorded) in leaves.items():
                gone = leaf_data(conn, index, name, key_text)  # the row is absent: null
                if not hmac.compare_digest(leaf_hash(gone).hex(), recorded):
                    what = f"is gone but leaf {index} records it: deleted behind the log's back"
                    problems.append(Problem(name, key_text, what))
    return VerifyReport(builder.size, rows, matched, tuple(problems))


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _compare(point: Any, builder: RootBuilder, problems: list[Problem]) -> int:
    """1 when the recomputed root of the checkpoint's prefix is the signed one."""
    if builder.size != point.size:
        return 0
    if hmac.compare_digest(builder.root().hex(), point.root_hash):
        return 1
    what = (
        f"the first {point.size} leaves no longer hash to the root of checkpoint {point.id}: a "
        "leaf was edited, deleted, inserted or reordered"
    )
    problems.append(Problem("log_leaves", _span(0, point.size - 1), what))
    return 0


def _hashes(conn: Connection, size: int | None = None) -> list[bytes]:
    query = select(LEAVES.c.leaf_hash).order_by(LEAVES.c.idx)
    if size is not None:
        query = query.where(LEAVES.c.idx < size)
    return [bytes.fromhex(h) for h in conn.execute(query).scalars()]


def check_witnessed(db: Database, checkpoint: Checkpoint, where: str) -> Problem | None:
    """What is wrong when the database's log no longer extends ``checkpoint`` (kept elsewhere)."""
    with _snapshot(db) as conn:
        hashes = _hashes(conn, checkpoint.size)
    span = _span(0, checkpoint.size - 1) if checkpoint.size else "-"
    if len(hashes) < checkpoint.size:
        what = (
            f"the checkpoint witnessed at {where} signed {checkpoint.size} leaves, the log holds "
            f"{len(hashes)}: leaves deleted"
        )
        return Problem("log_leaves", span, what)
    if not hmac.compare_digest(tree_root(hashes), checkpoint.root):
        what = (
            f"the first {checkpoint.size} leaves no longer hash to the root witnessed at {where}: "
            "the log was rewritten (with the checkpoints stored in the database)"
        )
        return Problem("log_leaves", span, what)
    return None


def make_checkpoint(db: Database, signer: Signer, origin: str | None = None) -> Checkpoint:
    """Sign the log's current root and store the checkpoint; ``origin`` defaults to the last's."""
    with _snapshot(db) as conn:
        previous = conn.execute(
            select(CHECKPOINTS.c.note).order_by(CHECKPOINTS.c.id.desc()).limit(1)
        ).scalar()
        hashes = _hashes(conn)
    if origin is None:
        if previous is None:
            raise AuditLogError("the first checkpoint needs an origin (the log's name)")
        origin = previous.split("\n", 1)[0]
    try:
        signed = sign_checkpoint(origin, len(hashes), tree_root(hashes), signer)
    except CheckpointError as exc:
        raise AuditLogError(str(exc)) from None
    with db.session(write=True) as session:
        session.add(
            models.LogCheckpoint(size=signed.size, root_hash=signed.root.hex(), note=signed.note)
        )
    return signed


def prove(db: Database, ident: str) -> dict[str, Any]:
    """An inclusion proof of a leaf (``INDEX``, or ``TABLE:KEY`` for a row's latest leaf)."""
    with _snapshot(db) as conn:
        query = select(LEAVES)
        if ident.isdigit():
            query = query.where(LEAVES.c.idx == int(ident))
        else:
            name, _, key = ident.partition(":")
            query = query.where(LEAVES.c.table_name == name, LEAVES.c.row_key == key)
        leaf = conn.execute(query.order_by(LEAVES.c.idx.desc()).limit(1)).first()
        if leaf is None:
            raise AuditLogError(f"no leaf {ident} in the log")
        point = conn.execute(
            select(CHECKPOINTS)
            .where(CHECKPOINTS.c.size > leaf.idx)
            .order_by(CHECKPOINTS.c.size, CHECKPOINTS.c.id)
            .limit(1)
        ).first()
        if point is None:
            raise AuditLogError(f"no checkpoint covers leaf {leaf.idx} yet: sign one first")
        hashes = _hashes(conn, point.size)
        if len(hashes) != point.size or tree_root(hashes).hex() != point.root_hash:
            raise AuditLogError(f"the log no longer matches checkpoint {point.id}: run verify")
        data = leaf_data(conn, leaf.idx, leaf.table_name, leaf.row_key)
        if leaf_hash(data) != hashes[leaf.idx]:
            raise AuditLogError(
                f"{leaf.table_name} {leaf.row_key} no longer matches leaf {leaf.idx} (a later "
                "leaf records its change, or it was tampered with: run verify)"
            )
        return {
            "format": PROOF_FORMAT,
            "leaf_index": leaf.idx,
            "tree_size": point.size,
            "leaf_data": data.decode(),
            "inclusion_proof": [
                base64.b64encode(h).decode() for h in inclusion_proof(hashes, leaf.idx)
            ],
            "checkpoint": point.note,
        }


def check_proof(document: object, key: PublicKey, origin: str | None = None) -> dict[str, Any]:
    """Check an exported proof with the public key alone; the proven leaf's fact, or raise."""
    if not isinstance(document, dict) or document.get("format") != PROOF_FORMAT:
        raise AuditLogError(f"not a {PROOF_FORMAT} document")
    try:
        signed = parse_checkpoint(str(document["checkpoint"]), key, origin)
        index, size = document["leaf_index"], document["tree_size"]
        data = str(document["leaf_data"]).encode()
        path = [base64.b64decode(str(p), validate=True) for p in document["inclusion_proof"]]
    except CheckpointError as exc:
        raise AuditLogError(f"checkpoint: {exc}") from None
    except (KeyError, TypeError, binascii.Error):
        raise AuditLogError("the proof document is incomplete or malformed") from None
    if not isinstance(index, int) or not isinstance(size, int) or size != signed.size:
        raise AuditLogError("the proof's tree size is not the checkpoint's")
    try:
        fact = json.loads(data)
    except ValueError:
        raise AuditLogError("the leaf data is not JSON") from None
    if not isinstance(fact, dict) or fact.get("index") != index:
        raise AuditLogError("the leaf data names another leaf index")
    try:
        root = root_from_inclusion_proof(index, size, leaf_hash(data), path)
    except ValueError as exc:
        raise AuditLogError(f"inclusion proof: {exc}") from None
    if not hmac.compare_digest(root, signed.root):
        raise AuditLogError("the inclusion proof does not lead to the checkpoint's root")
    return fact
