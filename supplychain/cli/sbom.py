"""``supplychain sbom IMAGE [-o FILE] [--format …]``: our SBOM of one image.

IMAGE is ``host/repo:tag``, ``host/repo@sha256:…`` (pulled by digest, every blob verified; only
the host named here is contacted), ``oci:DIR[:TAG]`` or ``docker-archive:FILE.tar``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from sbom import FORMATS

if TYPE_CHECKING:
    from sbom import ImageInfo, LayerInput
    from sbom.blob import Inflating
    from supplychain.reference import ImageReference

__all__ = ["add_parser", "cmd_sbom", "start_early"]

_BLOB_CACHE_BYTES = 20 * 1024**3
_GC_YOUNG = 50_000
"""Allocations between two collections of the youngest generation (Python's default: 700): a
cold SBOM made ~70 collections, 3-6 % of its time with every thread stopped; garbage with
cycles waits a little longer (this command ends in a fraction of a second)."""


class _ImageError(Exception):
    """The image cannot be pulled (a registry image's :class:`SourceError`, which is not
    imported for a local one: ``supplychain.interface`` is many dataclasses to build)."""


def _cache_dir(args: argparse.Namespace) -> Path:
    if args.cache_dir:
        return Path(args.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "supplychain" / "sbom"


class _Early(NamedTuple):
    """A local image whose layers :func:`start_early` started inflating."""

    image: str
    cache_dir: Path
    max_layer_bytes: int
    layers: list[LayerInput]
    info: ImageInfo
    started: dict[str, Inflating]


_early: list[_Early] = []  # the one start_early made, until cmd_sbom takes it


class _NotParsed(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotParsed(message)  # the command line's own parser says it, once


def start_early(words: list[str]) -> None:
    """Start inflating the biggest new layers of the local image named by ``words`` (the
    command line after ``sbom``), before the rest of the command line loads: :func:`cmd_sbom`
    reads from them. Nothing starts for a registry image, a command line that does not parse
    or an image that cannot be read (the command then says why, as it does without this)."""
    parser = _QuietParser(add_help=False)
    _arguments(parser)
    try:
        args, _ = parser.parse_known_args(words)
    except _NotParsed:
        return
    from sbom.errors import LayerError
    from sbom.local import LOCAL_PREFIXES, read_local

    if not args.image.startswith(LOCAL_PREFIXES):
        return
    try:
        layers, info, _config = read_local(args.image)
        cache_dir = _cache_dir(args)
        started = _inflate_early(layers, cache_dir, args.max_layer_bytes)
    except (LayerError, OSError):
        return
    _early.append(_Early(args.image, cache_dir, args.max_layer_bytes, layers, info, started))


def _take_early(image: str, cache_dir: Path, max_layer_bytes: int) -> _Early | None:
    """What :func:`start_early` started for this very image, cache and limit (else None, what
    it started closed)."""
    early = _early.pop() if _early else None
    if early is None or (early.image, early.cache_dir, early.max_layer_bytes) == (
        image,
        cache_dir,
        max_layer_bytes,
    ):
        return early
    for blob in early.started.values():
        blob.close()
    return None


def _inflate_early(
    layers: list[LayerInput], cache_dir: Path, max_layer_bytes: int
) -> dict[str, Inflating]:
    """The biggest layers not catalogued before, inflating while the catalogers load."""
    from sbom.blob import inflate_early
    from sbom.cache import LayerCache

    fresh = [x for x in layers if not LayerCache.known(cache_dir / "layers", x.digest)]
    return inflate_early(fresh, max_layer_bytes, os.cpu_count() or 1)


def _from_registry(text: str, cache_dir: Path, work: Path) -> tuple[list[LayerInput], ImageInfo]:
    # Imported here: a local layout needs none of the registry client (requests alone ~0.1 s).
    from supplychain.interface import SourceError
    from supplychain.reference import ReferenceError, parse_reference

    try:
        ref = parse_reference(text)
    except ReferenceError as exc:
        raise _ImageError(str(exc)) from None
    try:
        return _pull(text, ref, cache_dir, work)
    except SourceError as exc:
        raise _ImageError(str(exc)) from None


def _pull(
    text: str, ref: ImageReference, cache_dir: Path, work: Path
) -> tuple[list[LayerInput], ImageInfo]:
    from sbom import ImageInfo, LayerInput
    from supplychain.interface import ImageTarget, SourceError
    from supplychain.mediatypes import INDEX_MEDIA_TYPES
    from supplychain.registry import BlobCache, RegistryClient, docker_credentials
    from supplychain.registry.index import MAX_INDEX_ENTRIES, platform_images
    from supplychain.stages.source import RegistrySource

    client = RegistryClient(
        allowed=frozenset({ref.registry}),
        insecure=frozenset(),
        cache=BlobCache(cache_dir / "blobs", _BLOB_CACHE_BYTES),
        credentials=docker_credentials(),
    )
    try:
        manifest = client.get_manifest(ref.registry, ref.repository, ref.reference)
        digest = manifest.digest
        if manifest.media_type in INDEX_MEDIA_TYPES:
            choices = platform_images(manifest.data, max_entries=MAX_INDEX_ENTRIES)
            amd64 = [c for c in choices if c[2].startswith("linux/amd64")]
            if not (amd64 or choices):
                raise SourceError(f"{text}: the index lists no image")
            digest = (amd64 or choices)[0][0]
        target = ImageTarget(ref.registry, ref.repository, digest, ref.tag)
        image = RegistrySource(client, work).pull(target)
    finally:
        client.close()
    # Every blob was verified against its digest as it was pulled (or when the cache served it):
    # the SBOM does not hash it again, and reads the plain tar the pull inflated (hashed to its
    # diff_id) where there is one.
    layers = [
        LayerInput(layer.digest, layer.plain or layer.path, verified=True) for layer in image.layers
    ]
    return layers, ImageInfo(ref.name, digest, ref.tag, ref.name)


_SWITCH_INTERVAL = 0.0005
"""Seconds a thread running Python keeps the GIL from one that asks for it (Python's default:
0.005). Each layer's inflating thread asks for it after every 4 MiB while the tar parser runs
Python: with the default it waited up to 5 ms each time. 0.5 ms: 0.725 s against 0.785 s
median for the test image, 16 alternated runs, the same CPU time. This process does nothing
else, so the setting is the command's, not the library's (the service keeps the default)."""


def cmd_sbom(args: argparse.Namespace) -> int:
    """Write the SBOM; exit 0, or 2 with the reason when the image cannot be read."""
    sys.setswitchinterval(_SWITCH_INTERVAL)
    gc.set_threshold(_GC_YOUNG)
    from sbom.errors import LayerError
    from sbom.local import LOCAL_PREFIXES, read_local

    cache_dir = _cache_dir(args)
    image: str = args.image
    work = Path(tempfile.mkdtemp(prefix="sbom-"))
    started: dict[str, Inflating] = {}
    try:
        early = _take_early(image, cache_dir, args.max_layer_bytes)
        if early is not None:
            layers, info, started = early.layers, early.info, early.started
        else:
            if image.startswith(LOCAL_PREFIXES):
                layers, info, _config = read_local(image)
            else:
                layers, info = _from_registry(image, cache_dir, work)
            started = _inflate_early(layers, cache_dir, args.max_layer_bytes)
        from sbom import generate_sbom, prepare_render, render

        result = generate_sbom(
            layers,
            info,
            cache_dir / "layers",
            max_layer_bytes=args.max_layer_bytes,
            work_dir=work,
            while_reading=partial(prepare_render, args.format),
            started=started,
        )
        document = render(result, args.format)
    except (LayerError, _ImageError, OSError) as exc:
        print(f"supplychain sbom: {exc}", file=sys.stderr)
        return 2
    finally:
        for blob in started.values():  # closed by generate_sbom unless it was not reached
            blob.close()
        shutil.rmtree(work, ignore_errors=True)
    for warning in result.warnings:  # files skipped (malformed, hostile): the rest is in the SBOM
        print(f"supplychain sbom: warning: {warning}", file=sys.stderr)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(document)
    else:
        Path(args.output).write_bytes(document)
    return 0


def add_parser(subparsers: Any) -> None:
    """Add the ``sbom`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser("sbom", help="make an SBOM of one image")
    _arguments(parser)
    parser.set_defaults(func=cmd_sbom)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image", help="host/repo:tag, host/repo@sha256:…, oci:DIR[:TAG] or docker-archive:FILE.tar"
    )
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument(
        "--format", choices=FORMATS, default="cyclonedx-json", help="document format"
    )
    parser.add_argument("--cache-dir", help="per-layer and blob cache (default ~/.cache/…)")
    parser.add_argument(
        "--max-layer-bytes",
        type=int,
        default=8 * 1024**3,
        help="reject a layer that decompresses to more than this",
    )
