"""Expanding an image index into facts: its entries, checked, and the images to scan.

Every entry a runtime could pick is an image to decide (:mod:`supplychain.registry.index`). An
entry labelled an attestation by BuildKit's rules is fetched (digest verified) and kept as an
attestation only if its layers are in-toto statements; otherwise it is an image like any other.
Nested indexes are followed to ``max_depth``; all levels together may list at most
``max_entries`` entries. Beyond a limit, or when a child is missing at the registry, the index is
recorded with that reason, which the decision turns into a deny; nothing is queued for it.
Network faults propagate (the job retries); the database is touched only by
:meth:`Expansion.record`, after the network work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session

from supplychain.evidence.recorder import record_index, upsert_image
from supplychain.interface import ImageTarget
from supplychain.registry import (
    IndexEntry,
    NotFoundError,
    RegistryClient,
    RegistryError,
    is_attestation_manifest,
    parse_index,
)

__all__ = ["Expansion", "IndexRecord", "expand_index"]


@dataclass(frozen=True)
class IndexRecord:
    """One index (the top one or a nested one) to record."""

    target: ImageTarget
    """The index."""
    media_type: str
    """Its media type."""
    entries: tuple[IndexEntry, ...]
    """Its entries as classified (empty when ``error``)."""
    error: str | None
    """Why it cannot be used, or None."""


@dataclass
class Expansion:
    """What expanding one index found."""

    indexes: list[IndexRecord] = field(default_factory=list)
    """Indexes to record, nested ones before the index that lists them."""
    images: list[ImageTarget] = field(default_factory=list)
    """Platform images to queue (each once)."""

    def record(self, session: Session) -> None:
        """Record every index found (entries, or why it cannot be used) and each image's row."""
        for found in self.indexes:
            record_index(
                session,
                found.target,
                media_type=found.media_type,
                entries=found.entries,
                error=found.error,
            )
        for image in self.images:
            upsert_image(session, image)


class _Walk:
    def __init__(self, client: RegistryClient, max_entries: int, max_depth: int) -> None:
        self.client = client
        self.budget = max_entries
        self.max_entries = max_entries
        self.max_depth = max_depth
        self.found = Expansion()
        self.queued: set[str] = set()

    def index(self, target: ImageTarget, media_type: str, data: bytes, depth: int) -> str | None:
        """Record ``target``; the error that makes it unusable (then also its parents'), if any."""
        try:
            entries = parse_index(data, max_entries=self.budget)
        except RegistryError as exc:
            return self._fail(target, media_type, str(exc))
        self.budget -= len(entries)
        checked: list[IndexEntry] = []
        nested: list[tuple[ImageTarget, str, bytes]] = []
        for entry in entries:
            child = ImageTarget(target.registry, target.repository, entry.digest, None)
            try:
                if entry.kind == "attestation":
                    manifest = self.client.get_manifest(
                        target.registry, target.repository, entry.digest
                    )
                    if not is_attestation_manifest(manifest.data):
                        entry = replace(entry, kind="image", refers_to=None)
                if entry.kind == "index":
                    if depth >= self.max_depth:
                        error = f"image indexes nested deeper than {self.max_depth}"
                        return self._fail(target, media_type, error)
                    manifest = self.client.get_manifest(
                        target.registry, target.repository, entry.digest
                    )
                    nested.append((child, manifest.media_type, manifest.data))
                elif entry.kind == "image" and not self.client.manifest_exists(
                    target.registry, target.repository, entry.digest
                ):
                    raise NotFoundError(f"manifest {entry.digest} not found")
            except NotFoundError:
                return self._fail(
                    target, media_type, f"child {entry.digest} is missing at the registry"
                )
            checked.append(entry)
        for child, child_type, child_data in nested:
            failed = self.index(child, child_type, child_data, depth + 1)
            if failed:
                return self._fail(target, media_type, f"nested index {child.digest}: {failed}")
        self.found.indexes.append(IndexRecord(target, media_type, tuple(checked), None))
        for entry in checked:
            if entry.kind == "image" and entry.digest not in self.queued:
                self.queued.add(entry.digest)
                self.found.images.append(
                    ImageTarget(target.registry, target.repository, entry.digest, None)
                )
        return None

    def _fail(self, target: ImageTarget, media_type: str, error: str) -> str:
        self.found.indexes.append(IndexRecord(target, media_type, (), error))
        return error


def expand_index(
    client: RegistryClient,
    target: ImageTarget,
    media_type: str,
    data: bytes,
    *,
    max_entries: int,
    max_depth: int,
) -> Expansion:
    """Expand the verified index ``data`` of ``target``; nothing is queued for a failed one."""
    walk = _Walk(client, max_entries, max_depth)
    if walk.index(target, media_type, data, 0) is not None:
        walk.found.images.clear()
    return walk.found
