"""The public entry point: an image's layers in, its packages (and documents) out.

Layers not in the cache are streamed once each, in parallel threads (``isal`` and ``zstandard``
release the GIL while inflating); the OS is detected from the merged OS files, the catalogers
run on each new layer, the results are cached and the layers merged with overlay semantics.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import sbom.catalogers  # noqa: F401  (registers the catalogers)
from sbom.blob import Inflating, blob_digest
from sbom.cache import LayerCache, LayerResult
from sbom.errors import LayerLimitError
from sbom.guard import catalog_files, run_cataloger
from sbom.inputs import ImageInfo, LayerInput
from sbom.interface import (
    CATALOGERS,
    CatalogerError,
    FileEntry,
    LayerCataloger,
    OSInfo,
    Package,
    extension,
)
from sbom.licenses import prepare as prepare_licenses
from sbom.merge import apply_deletions, merge_layers
from sbom.osrelease import OS_FILES, detect_os, wants_os_file
from sbom.reader import DEFAULT_MAX_BYTES, HandOff, LayerError, LayerFiles, read_layer
from sbom.spool import ReadLimits, Spool, Stopped

__all__ = ["ImageInfo", "LayerError", "LayerInput", "ReadLimits", "SbomResult", "generate_sbom"]

log = logging.getLogger(__name__)
_OS = "os-release"
DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class SbomResult:
    """An image's packages, ready to be written as CycloneDX or SPDX."""

    image: ImageInfo
    """The image."""
    os_info: OSInfo | None
    """Its operating system."""
    packages: tuple[Package, ...]
    """Its packages, OS packages first."""
    layers: tuple[str, ...]
    """Layer digests, bottom first."""
    warnings: tuple[str, ...]
    """Entries and files skipped, and why (``path: problem``, one per skipped file or entry;
    a malformed manifest costs only itself): keep them with the SBOM."""
    cached_layers: int
    """How many layers came from the cache."""


class _OsFiles(LayerCataloger):
    name = _OS
    version = 1
    max_size = 64 * 1024

    extensions = frozenset(extension(p) for p in OS_FILES)

    def wants(self, path: str) -> bool:
        return wants_os_file(path)

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        return {}


def _os_key(os_info: OSInfo | None) -> str:
    return f"{os_info.family}-{os_info.version}" if os_info else ""


def _catalog(
    read: LayerFiles,
    catalogers: Sequence[LayerCataloger],
    os_info: OSInfo | None,
    streamed: Mapping[str, _Found] | None = None,
) -> LayerResult:
    """The layer catalogued: ``streamed`` holds what was found, per cataloger, in the files
    catalogued one by one while it was read (those files are not in ``read``)."""
    packages: dict[str, dict[str, list[Package]]] = {}
    warnings = list(read.warnings)
    for cataloger in catalogers:
        early, problems = (streamed or {}).get(cataloger.name) or ({}, [])
        warnings.extend(problems)
        if early:
            packages[cataloger.name] = dict(early)
        files = read.files.get(cataloger.name) or []
        if not files:
            continue
        try:  # a file that fails is skipped and named in the warnings (sbom/guard.py)
            found, problems = run_cataloger(cataloger, files, os_info)
        except CatalogerError as exc:  # nothing usable in its files: said, not fatal
            warnings.append(f"cataloger {cataloger.name} failed: {exc}")
            log.warning("layer %s: cataloger %s failed: %s", read.digest, cataloger.name, exc)
            continue
        warnings.extend(problems)
        packages.setdefault(cataloger.name, {}).update(found)
    os_files = {f.path: f.data.decode("utf-8", "replace") for f in read.files.get(_OS) or []}
    return LayerResult(
        read.digest,
        _os_key(os_info),
        os_files,
        read.whiteouts,
        read.opaque_dirs,
        packages,
        tuple(warnings),
    )


def _detect(layers: Sequence[LayerFiles | LayerResult]) -> OSInfo | None:
    files: dict[str, bytes] = {}
    for layer in layers:
        apply_deletions(files, layer.whiteouts, layer.opaque_dirs)
        if isinstance(layer, LayerResult):
            files.update({k: v.encode() for k, v in layer.os_files.items()})
        else:
            files.update({f.path: f.data for f in layer.files.get(_OS) or []})
    return detect_os(files)


_Found = tuple[dict[str, list[Package]], list[str]]
"""One cataloger's findings in one layer: packages per file, warnings."""


@dataclass(frozen=True)
class _Done:
    """A layer reader has stopped."""

    failed: bool
    """It raised: the SBOM has failed."""


class _Handed:
    """Files the layer readers hand over to be catalogued one by one, catalogued by the thread
    that waits for the readers (it would otherwise only wait) while the layers still stream:
    what waits when it looks is catalogued together, a cataloger call per layer."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[str, LayerCataloger, FileEntry] | _Done] = SimpleQueue()
        self._failed = False
        self.found: dict[str, dict[str, _Found]] = {}
        """Layer digest → cataloger name → what it found in those files."""

    def hand_off(self, digest: str) -> HandOff:
        """What the reader of layer ``digest`` calls with each such file."""
        return lambda cataloger, entry: self._queue.put((digest, cataloger, entry))

    def done(self, failed: bool) -> None:
        """A reader has stopped (``failed``: the SBOM has failed)."""
        self._queue.put(_Done(failed))

    def work(self, readers: int) -> None:
        """Catalogue what the readers hand over until ``readers`` of them are done (once one
        has failed, what is left is dropped: the SBOM has failed)."""
        while readers:
            waiting = [self._queue.get()]
            with contextlib.suppress(Empty):
                while True:
                    waiting.append(self._queue.get_nowait())
            batches: dict[tuple[str, LayerCataloger], list[FileEntry]] = {}
            for item in waiting:
                if isinstance(item, _Done):
                    readers -= 1
                    self._failed = self._failed or item.failed
                else:
                    batches.setdefault((item[0], item[1]), []).append(item[2])
            for (digest, cataloger), files in batches.items():
                if self._failed:
                    break
                found, problems = catalog_files(cataloger, files)
                slot = self.found.setdefault(digest, {}).setdefault(cataloger.name, ({}, []))
                slot[0].update(found)
                slot[1].extend(problems)


def _raise_first(futures: Sequence[Future[Any]]) -> None:
    """Raise the first error of the (finished) ``futures``, passing over the layers that only
    stopped because another one failed."""
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])


def generate_sbom(
    layers: Sequence[LayerInput],
    image: ImageInfo,
    cache_dir: Path | None = None,
    *,
    max_layer_bytes: int = DEFAULT_MAX_BYTES,
    workers: int | None = None,
    catalogers: Sequence[LayerCataloger] | None = None,
    work_dir: Path | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
    while_reading: Callable[[], object] | None = None,
    started: Mapping[str, Inflating] | None = None,
) -> SbomResult:
    """Catalogue an image from its layers (bottom first); raise :class:`LayerError` when a layer
    cannot be read (corrupt, hostile beyond repair, over ``max_layer_bytes`` decompressed or over
    one of ``limits``). Wanted files too big to keep in memory go to a temporary folder made in
    ``work_dir`` (the system's temporary directory when None) and removed before returning.
    ``while_reading`` is called in this thread while layers are read (it would otherwise only
    wait for them; the inflating runs outside the GIL): e.g. load the writer that follows.
    ``started`` are blobs :func:`~sbom.reader.inflate_early` started inflating, by digest: the
    layers to read are read from them, the others closed."""
    early = dict(started or {})
    try:
        return _generate(
            layers, image, cache_dir, max_layer_bytes, workers, catalogers, work_dir, limits,
            while_reading, early,
        )  # fmt: skip
    finally:
        for blob in early.values():  # not needed: the layer was cached (or the SBOM failed)
            blob.close()


def _generate(
    layers: Sequence[LayerInput],
    image: ImageInfo,
    cache_dir: Path | None,
    max_layer_bytes: int,
    workers: int | None,
    catalogers: Sequence[LayerCataloger] | None,
    work_dir: Path | None,
    limits: ReadLimits,
    while_reading: Callable[[], object] | None,
    early: dict[str, Inflating],
) -> SbomResult:
    chosen = list(catalogers if catalogers is not None else CATALOGERS.values())
    wanted: list[LayerCataloger] = [*chosen, _OsFiles()]
    cache = LayerCache(cache_dir, chosen) if cache_dir is not None else None
    cached = {layer.digest: cache.get(layer.digest) for layer in layers} if cache else {}
    spool = Spool(work_dir, limits)

    handed = _Handed()

    def read(
        layer: LayerInput, blob: Inflating | None = None, hand_off: bool = False
    ) -> LayerFiles:
        try:
            files = read_layer(
                layer.path,
                layer.digest,
                wanted,
                max_layer_bytes,
                layer.offset,
                layer.length,
                spool=spool,
                verify=not layer.verified,
                started=blob,
                hand_off=handed.hand_off(layer.digest) if hand_off else None,
            )
        except BaseException:
            spool.fail()  # the other layers stop reading: the SBOM has failed
            if hand_off:
                handed.done(failed=True)
            raise
        if hand_off:
            handed.done(failed=False)
        return files

    def check(layer: LayerInput) -> None:
        if blob_digest(layer.path, layer.offset, layer.length) != layer.digest:
            raise LayerError(f"layer {layer.digest} does not match its digest")

    try:
        missing = [layer for layer in layers if cached.get(layer.digest) is None]
        threads = max(1, min(len(missing), workers or os.cpu_count() or 1))
        unchecked = [layer for layer in layers if not layer.verified and cached.get(layer.digest)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            checks = [pool.submit(check, layer) for layer in unchecked]
            reads = [
                pool.submit(read, layer, early.pop(layer.digest, None), True) for layer in missing
            ]
            if reads:  # this thread would wait for them: what comes next is done meanwhile
                prepare_licenses()
                if while_reading is not None:
                    while_reading()
            handed.work(len(reads))
        _raise_first([*checks, *reads])
        fresh = {m.digest: f.result() for m, f in zip(missing, reads, strict=True)}
        return _catalog_image(
            layers, image, fresh, handed.found, cached, chosen, cache, read, limits
        )
    finally:
        spool.close()


def _catalog_image(
    layers: Sequence[LayerInput],
    image: ImageInfo,
    fresh: Mapping[str, LayerFiles],
    streamed: Mapping[str, Mapping[str, _Found]],
    cached: Mapping[str, LayerResult | None],
    chosen: Sequence[LayerCataloger],
    cache: LayerCache | None,
    read: Callable[[LayerInput], LayerFiles],
    limits: ReadLimits,
) -> SbomResult:
    stack: list[LayerFiles | LayerResult] = [
        fresh.get(layer.digest) or cached[layer.digest]  # type: ignore[misc]
        for layer in layers
    ]
    os_info = _detect(stack)
    results: list[LayerResult] = []
    hits = found = 0
    for layer, item in zip(layers, stack, strict=True):
        if isinstance(item, LayerResult) and item.os_key == _os_key(os_info):
            result = item
            hits += 1
        else:
            if isinstance(item, LayerFiles):
                result = _catalog(item, chosen, os_info, streamed.get(layer.digest))
            else:  # cached for another OS: read again, every file catalogued at its end
                result = _catalog(read(layer), chosen, os_info)
        found += sum(len(p) for paths in result.packages.values() for p in paths.values())
        if found > limits.image_packages:  # checked before caching: never cache such a layer
            raise LayerLimitError(
                f"layer {layer.digest}: the image holds more than {limits.image_packages} packages"
            )
        if cache is not None and result is not item:
            cache.put(result)
        results.append(result)
    packages = merge_layers(results, {c.name: c for c in chosen})
    warnings = tuple(w for r in results for w in r.warnings)
    return SbomResult(
        image, os_info, tuple(packages), tuple(layer.digest for layer in layers), warnings, hits
    )
