"""Witness checkpoints in an OCI registry: a copy of each signed note outside the database.

A checkpoint is pushed as an OCI artifact (image manifest, ``artifactType`` below, the empty
config, one layer holding the signed note) tagged ``size-<N>`` and ``latest``. ``audit verify
--witness`` reads ``latest`` back, checks its signature with the log's public key and compares
its root with the one recomputed from the database, so someone who rewrites the log *and* the
checkpoints stored in the database is still caught.
"""

from __future__ import annotations

import hashlib
import json

from supplychain.interface import ImageTarget
from supplychain.mediatypes import OCI_MANIFEST
from supplychain.reference import ReferenceError, parse_reference
from supplychain.registry import RegistryClient, RegistryError
from supplychain.signatures.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from supplychain.signatures.keys import PublicKey
from supplychain.signatures.storage import SignatureStore, StorageError

__all__ = ["ARTIFACT_TYPE", "WitnessError", "fetch_witnessed", "push_checkpoint", "witness_target"]

ARTIFACT_TYPE = "application/vnd.dev.supplychain.tlog-checkpoint.v1"
"""The artifact (and layer) media type of a witnessed checkpoint."""
EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
MAX_NOTE = 64 * 1024


class WitnessError(Exception):
    """A checkpoint could not be pushed to or read from the witness repository."""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def witness_target(repository: str) -> ImageTarget:
    """``host/repository`` as a target (its digest unused: artifacts are pushed by tag)."""
    try:
        ref = parse_reference(f"{repository}:latest")
    except ReferenceError as exc:
        raise WitnessError(f"witness repository {repository!r}: {exc}") from None
    return ImageTarget(ref.registry, ref.repository, _digest(EMPTY), "latest")


def push_checkpoint(client: RegistryClient, repository: str, checkpoint: Checkpoint) -> str:
    """Push ``checkpoint`` to ``repository`` (tags ``size-N`` and ``latest``); its digest."""
    target = witness_target(repository)
    store = SignatureStore(client)
    note = checkpoint.note.encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": _digest(EMPTY), "size": len(EMPTY)},
        "layers": [
            {
                "mediaType": ARTIFACT_TYPE,
                "digest": _digest(note),
                "size": len(note),
                "annotations": {"org.opencontainers.image.title": "checkpoint"},
            }
        ],
        "annotations": {
            "dev.supplychain.tlog.origin": checkpoint.origin,
            "dev.supplychain.tlog.size": str(checkpoint.size),
        },
    }
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    try:
        store.push_blob(target, EMPTY)
        store.push_blob(target, note)
        digest, _ = store.push_manifest(target, f"size-{checkpoint.size}", data, OCI_MANIFEST)
        store.push_manifest(target, "latest", data, OCI_MANIFEST)
    except StorageError as exc:
        raise WitnessError(f"pushing the checkpoint to {repository}: {exc}") from None
    return digest


def fetch_witnessed(
    client: RegistryClient, repository: str, key: PublicKey, reference: str = "latest"
) -> Checkpoint | None:
    """The checkpoint witnessed under ``reference`` (checked with ``key``); None when absent."""
    target = witness_target(repository)
    try:
        manifest = client.try_get_manifest(target.registry, target.repository, reference)
        if manifest is None:
            return None
        document = json.loads(manifest.data)
        layers = document.get("layers") if isinstance(document, dict) else None
        if document.get("artifactType") != ARTIFACT_TYPE or not isinstance(layers, list):
            raise WitnessError(f"{repository}:{reference} is not a witnessed checkpoint")
        layer = layers[0] if layers else None
        if not isinstance(layer, dict) or not 0 < int(layer.get("size", 0)) <= MAX_NOTE:
            raise WitnessError(f"{repository}:{reference} holds no checkpoint note")
        path = client.get_blob(
            target.registry, target.repository, str(layer["digest"]), int(layer["size"])
        )
        note = path.read_text(encoding="utf-8")
    except (RegistryError, ValueError, OSError) as exc:
        raise WitnessError(f"reading {repository}:{reference}: {exc}") from None
    try:
        return parse_checkpoint(note, key)
    except CheckpointError as exc:
        raise WitnessError(f"{repository}:{reference}: {exc}") from None
