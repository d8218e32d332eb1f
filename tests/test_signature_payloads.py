"""Hostile ``.sig``/``.att`` manifests on the real registry: one blob listed many times is read
and stored once, caps hold, and ``supplychain scan`` stays small in memory and on disk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from supplychain.evidence.database import Database
from supplychain.interface import ImageTarget
from supplychain.mediatypes import OCI_MANIFEST
from supplychain.registry import BlobCache, RegistryClient
from supplychain.signatures import KeyFileSigner, generate_key
from supplychain.signatures.cosign import (
    ATTESTATION_SUFFIX,
    DSSE_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_SUFFIX,
    SIMPLESIGNING_TYPE,
    sign_image,
)
from supplychain.signatures.keys import public_pem
from supplychain.signatures.storage import MAX_LAYERS, SignatureStore, tag_for
from tests.support.advisories import URLLIB3_HIGH
from tests.support.images import push, tiny_layout
from tests.support.registry import Registry
from tests.support.service import SUPPLYCHAIN, service_env
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def _descriptor(media_type: str, data: bytes, notes: dict[str, str]) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(data), "annotations": notes}


def _push_listing(store: SignatureStore, target: ImageTarget, suffix: str, layers: list) -> None:
    config = json.dumps({"architecture": "", "os": "", "config": {}}).encode()
    store.push_blob(target, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config, {}),
        "layers": layers,
    }
    data = json.dumps(manifest).encode()
    store.push_manifest(target, tag_for(target.digest, suffix), data, OCI_MANIFEST)


def _peak_rss(process: subprocess.Popen[str]) -> int:
    """Bytes of the process's own peak RSS (``VmHWM``), read until it exits."""
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            break
        time.sleep(0.02)
    return peak


def test_hostile_listings_are_read_and_stored_once_within_caps(tmp_path: Path) -> None:
    build_trivy_db(tmp_path / "trivy", [URLLIB3_HIGH])
    with Registry(tmp_path / "registry") as registry:
        digest = push(tiny_layout(), "tiny", f"{registry.host}/team/tiny:v1")
        target = ImageTarget(registry.host, "team/tiny", digest)
        client = RegistryClient(
            frozenset({registry.host}), frozenset(), BlobCache(tmp_path / "c", 1 << 30)
        )
        store = SignatureStore(client)
        key = generate_key()
        sign_image(store, target, KeyFileSigner(key))  # one real signature, listed first
        (tmp_path / "ci.pub").write_bytes(public_pem(key))
        valid = json.loads(
            client.get_manifest(registry.host, "team/tiny", tag_for(digest, "sig")).data
        )
        big = os.urandom(16 * MiB)  # over the per-payload cap: never fetched
        medium = os.urandom(3 * MiB)  # under it: fetched once, however often listed
        for blob in (big, medium):
            store.push_blob(target, blob)
        for suffix, media_type in (
            (SIGNATURE_SUFFIX, SIMPLESIGNING_TYPE),
            (ATTESTATION_SUFFIX, DSSE_TYPE),
        ):
            same = [_descriptor(media_type, big, {SIGNATURE_ANNOTATION: "AAAA"})] * 64
            each = [
                _descriptor(
                    media_type, medium, {SIGNATURE_ANNOTATION: base64.b64encode(b"%d" % i).decode()}
                )
                for i in range(64)
            ]
            layers = (valid["layers"] if suffix == SIGNATURE_SUFFIX else []) + same + each
            _push_listing(store, target, suffix, layers)

        data = tmp_path / "data"
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(data),
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_VERIFY_KEYS": str(tmp_path / "ci.pub"),
            }
        )
        child = subprocess.Popen(
            [*SUPPLYCHAIN, "scan", f"{registry.host}/team/tiny:v1", "--output", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(child.communicate(timeout=300)))
        reader.start()
        peak = _peak_rss(child)
        reader.join()
    answer = json.loads(out[0])
    assert answer["decision"] in ("allow", "deny"), out[1][-2000:]
    assert 0 < peak < 300 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    database = data / "supplychain.db"
    assert database.stat().st_size < 16 * MiB
    with sqlite3.connect(database) as db:
        payloads = db.execute("SELECT size FROM payloads ORDER BY size").fetchall()
        signatures = db.execute("SELECT verified, reason, payload FROM signatures").fetchall()
        attestations = db.execute("SELECT verified, reason, envelope FROM attestations").fetchall()
    # the real signature's payload and the 3 MiB blob, once each; the 16 MiB one never
    assert [size for (size,) in payloads][-1] == 3 * MiB and len(payloads) == 2
    assert all(inline is None for *_, inline in signatures + attestations)
    assert sum(verified for verified, *_ in signatures) == 1
    assert not any(verified for verified, *_ in attestations)
    reasons = [reason for _, reason, _ in signatures + attestations]
    over_payload = [r for r in reasons if "over the cap of 4194304 per payload" in r]
    assert len(over_payload) == 2  # 64 identical listings of the big blob are one, per manifest
    over_layers = [r for r in reasons if f"over the cap of {MAX_LAYERS} per manifest" in r]
    assert len(over_layers) == 2
    assert len(signatures) == len(attestations) == MAX_LAYERS + 1


def test_migration_moves_inline_payloads_into_payloads(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade("0003")
    blob = b"signed payload"
    insert = (
        "INSERT INTO signatures (image_id, kind, reference, digest, verified, reason, payload,"
        " found_at) VALUES (:i, 'cosign-tag', 'r/x', 'sha256:01', 0, 'r', :p, '2026-01-01')"
    )
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO images (host, repository, digest, first_seen)"
                " VALUES ('r', 'x', 'sha256:00', '2026-01-01')"
            )
        )
        image = conn.execute(text("SELECT id FROM images")).scalar_one()
        for _ in range(3):
            conn.execute(text(insert), {"i": image, "p": blob})
    db.upgrade()
    with db.engine.begin() as conn:
        rows = conn.execute(text("SELECT payload, payload_digest FROM signatures")).all()
        stored = conn.execute(text("SELECT digest, data FROM payloads")).all()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert [tuple(r) for r in rows] == [(None, digest)] * 3
    assert [(d, bytes(b)) for d, b in stored] == [(digest, blob)]
    db.dispose()
