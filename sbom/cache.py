"""Per-layer cache: what a layer contributed, keyed by layer digest and cataloger versions.

One JSON file per key, in a folder per layer under the cache dir (so that whether a layer was
ever catalogued is known without loading the catalogers: :meth:`LayerCache.known`), written
atomically (temp file + rename), so concurrent workers never see half an entry. A corrupt or
unreadable entry is a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbom.interface import LayerCataloger, Package

__all__ = ["LayerCache", "LayerResult"]

log = logging.getLogger(__name__)
_TUPLE_FIELDS = {f.name for f in dataclasses.fields(Package) if "tuple" in str(f.type)}
_PAIR_FIELDS = {"qualifiers", "properties"}
_PACKAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Package))


@dataclass(frozen=True)
class LayerResult:
    """One layer, catalogued."""

    digest: str
    """Layer digest."""
    os_key: str
    """The OS the catalogers were told about (``family-version`` or empty): results depend on it."""
    os_files: dict[str, str]
    """The OS-detection files the layer holds (path → text)."""
    whiteouts: tuple[str, ...]
    """Paths the layer deletes from below."""
    opaque_dirs: tuple[str, ...]
    """Directories the layer makes opaque."""
    packages: dict[str, dict[str, list[Package]]]
    """Cataloger name → source path → packages."""
    warnings: tuple[str, ...] = ()
    """What was skipped while reading or cataloguing the layer."""


def _package(raw: Mapping[str, Any]) -> Package:
    values = dict(raw)
    for name in _TUPLE_FIELDS:
        if name in _PAIR_FIELDS:
            values[name] = tuple((str(k), str(v)) for k, v in values.get(name) or ())
        else:
            values[name] = tuple(values.get(name) or ())
    return Package(**values)


def _to_json(result: LayerResult) -> dict[str, Any]:
    """The entry as JSON-ready values. Field by field rather than ``dataclasses.asdict``, which
    deep-copies every value (every owned file of every package): that was a third of a cold
    SBOM's CPU time; ``json`` writes the tuples as the lists ``asdict`` gave."""
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    data["packages"] = {
        cataloger: {
            path: [{name: getattr(p, name) for name in _PACKAGE_FIELDS} for p in pkgs]
            for path, pkgs in paths.items()
        }
        for cataloger, paths in result.packages.items()
    }
    return data


def _from_json(data: Mapping[str, Any]) -> LayerResult:
    return LayerResult(
        digest=str(data["digest"]),
        os_key=str(data["os_key"]),
        os_files={str(k): str(v) for k, v in data["os_files"].items()},
        whiteouts=tuple(data["whiteouts"]),
        opaque_dirs=tuple(data["opaque_dirs"]),
        packages={
            str(cataloger): {str(path): [_package(p) for p in pkgs] for path, pkgs in paths.items()}
            for cataloger, paths in data["packages"].items()
        },
        warnings=tuple(data.get("warnings") or ()),
    )


def _folder(root: Path, digest: str) -> Path:
    return root / hashlib.sha256(digest.encode()).hexdigest()


class LayerCache:
    """Catalogued layers on disk under ``root``."""

    def __init__(self, root: Path, catalogers: Iterable[LayerCataloger]) -> None:
        self.root = root
        self._versions = sorted((c.name, c.version) for c in catalogers)

    def _file(self, digest: str) -> Path:
        key = json.dumps({"layer": digest, "catalogers": self._versions, "format": 1})
        return _folder(self.root, digest) / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    @staticmethod
    def known(root: Path, digest: str) -> bool:
        """True when a result for ``digest`` was stored under ``root``, for whatever cataloger
        versions: a hint (its result may be cached) that needs no cataloger loaded."""
        return _folder(root, digest).is_dir()

    def get(self, digest: str) -> LayerResult | None:
        """The cached result for ``digest`` with the current cataloger versions, if any."""
        path = self._file(digest)
        try:
            result = _from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable SBOM cache entry %s: %s", path.name, exc)
            return None
        return result if result.digest == digest else None

    def put(self, result: LayerResult) -> None:
        """Store ``result`` atomically (errors are logged: the cache is an optimisation)."""
        path = self._file(result.digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(json.dumps(_to_json(result), separators=(",", ":")).encode())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("could not write SBOM cache entry %s: %s", path.name, exc)
