"""Images on local disk as the pipeline's source: ``oci:DIR[:TAG]`` and ``docker-archive:FILE``.

``supplychain scan`` takes every input ``supplychain sbom`` takes. The image is read with
:mod:`sbom.local`, every blob checked against its digest while it is copied into a one-image OCI
layout for Trivy (a docker archive gets the OCI manifest of its config and layers). Its target is
``local/<name>@<manifest digest>``: there is no registry, so no signatures are looked up
(:class:`NoSignatures`), and a policy that requires signatures denies the image.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from sbom import LayerError, LayerInput
from sbom.local import read_local
from supplychain.interface import (
    ImageSource,
    ImageTarget,
    Layer,
    PulledImage,
    SignatureEvidence,
    SourceError,
    Verifier,
)
from supplychain.jsonutil import json_object
from supplychain.mediatypes import OCI_MANIFEST
from supplychain.registry.index import platform_of
from supplychain.registry.layout import write_layout

__all__ = ["LOCAL_REGISTRY", "LocalSource", "NoSignatures"]

LOCAL_REGISTRY = "local"
"""The registry part of a local image's target: no registry is contacted."""
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_CHUNK = 1024 * 1024
_MAX_JSON = 16 * 1024 * 1024
_NAME = re.compile(r"[^a-z0-9._/-]+")


class NoSignatures(Verifier):
    """A local image has no registry to hold signatures: nothing is found, nothing trusted."""

    def verify(self, image: PulledImage) -> tuple[SignatureEvidence, ...]:
        return ()


def _copy_verified(layer: LayerInput, dest: Path) -> tuple[str, int]:
    """Copy ``layer``'s bytes to ``dest``; its SHA-256 must be the digest it is known by."""
    digest = hashlib.sha256()
    remaining = layer.length
    with layer.path.open("rb") as src, dest.open("wb") as out:
        src.seek(layer.offset)
        while remaining is None or remaining > 0:
            chunk = src.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            remaining = None if remaining is None else remaining - len(chunk)
    if remaining or f"sha256:{digest.hexdigest()}" != layer.digest:
        raise SourceError(f"{layer.path}: blob {layer.digest} does not match its digest")
    return layer.digest, dest.stat().st_size


class LocalSource(ImageSource):
    """One local image; :meth:`target` names it, :meth:`pull` lays it out for the pipeline."""

    def __init__(self, image: str, work_root: Path) -> None:
        self.image = image
        self.work_root = work_root
        try:
            self._layers, info, config = read_local(image)
        except (LayerError, OSError) as exc:
            raise SourceError(str(exc)) from None
        if not self._layers:
            raise SourceError(f"{image}: the image has no layers")
        self._config = config
        self._manifest: bytes | None = None
        name = _NAME.sub("-", info.name.lower()).strip("/.-") or "image"
        self._repository = name
        self._tag = info.tag
        self._digest = info.digest

    def target(self) -> ImageTarget:
        """``local/<name>@<manifest digest>`` (a docker archive's manifest is made here)."""
        if self._config is None:  # an OCI layout: its manifest is verified by read_local
            return ImageTarget(LOCAL_REGISTRY, self._repository, self._digest, self._tag)
        digest = self._docker_manifest(self._config)[1]
        return ImageTarget(LOCAL_REGISTRY, self._repository, digest, None)

    def _docker_manifest(self, config_bytes: bytes) -> tuple[bytes, str]:
        """The OCI manifest of a docker archive's config and layers, and its digest."""
        if self._manifest is None:
            config = {"mediaType": _OCI_CONFIG, "digest": self._digest, "size": len(config_bytes)}
            layers = []
            for layer in self._layers:
                with layer.path.open("rb") as handle:
                    handle.seek(layer.offset)
                    magic = handle.read(4)
                kind = (
                    "+gzip"
                    if magic[:2] == b"\x1f\x8b"
                    else "+zstd"
                    if magic == b"\x28\xb5\x2f\xfd"
                    else ""
                )
                layers.append(
                    {
                        "mediaType": f"application/vnd.oci.image.layer.v1.tar{kind}",
                        "digest": layer.digest,
                        "size": layer.length,
                    }
                )
            document = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config,
                "layers": layers,
            }
            self._manifest = json.dumps(document, separators=(",", ":")).encode()
        return self._manifest, "sha256:" + hashlib.sha256(self._manifest).hexdigest()

    def pull(self, target: ImageTarget) -> PulledImage:
        self.work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="local-", dir=self.work_root))
        try:
            return self._pull(target, work)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise SourceError(f"{self.image}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _pull(self, target: ImageTarget, work: Path) -> PulledImage:
        blobs_dir = work / ".blobs"
        blobs_dir.mkdir()
        if self._config is None:
            layout_blobs = self._layers[0].path.parent  # the layout's blobs/sha256
            manifest = _verified_read(layout_blobs, self._digest)
            document = json_object(manifest, f"manifest of {self.image}", SourceError)
            config_digest = str(document["config"]["digest"])
            config = _verified_read(layout_blobs, config_digest)
            media_type = str(document.get("mediaType") or OCI_MANIFEST)
        else:
            manifest, _digest = self._docker_manifest(self._config)
            document = json_object(manifest, "manifest", SourceError)
            config, config_digest, media_type = self._config, self._digest, OCI_MANIFEST
        if f"sha256:{hashlib.sha256(manifest).hexdigest()}" != target.digest:
            raise SourceError(f"{self.image}: the manifest changed since it was read")
        config_path = blobs_dir / "config"
        config_path.write_bytes(config)
        blobs = [(config_digest, config_path)]
        layers = []
        for index, (layer, item) in enumerate(zip(self._layers, document["layers"], strict=True)):
            digest, size = _copy_verified(layer, blobs_dir / f"layer-{index}")
            blobs.append((digest, blobs_dir / f"layer-{index}"))
            layers.append(Layer(digest, str(item["mediaType"]), size, blobs_dir / f"layer-{index}"))
        layout = work / "layout"
        layout.mkdir()
        write_layout(
            layout,
            media_type=media_type,
            manifest=manifest,
            manifest_digest=target.digest,
            blobs=blobs,
            ref_name=target.tag,
        )
        return PulledImage(
            target=target,
            media_type=media_type,
            manifest=manifest,
            config=config,
            platform=platform_of(json_object(config, f"config of {self.image}", SourceError)),
            layers=tuple(layers),
            layout_dir=layout,
        )


def _verified_read(blob_dir: Path, digest: str) -> bytes:
    """A manifest or config blob of an OCI layout, checked against its digest."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise SourceError(f"unsupported or invalid digest {digest[:80]!r}")
    path = blob_dir / digest.removeprefix("sha256:")
    if path.stat().st_size > _MAX_JSON:
        raise SourceError(f"{path}: too large for a manifest or config")
    data = path.read_bytes()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
        raise SourceError(f"{path}: blob does not match its digest {digest}")
    return data
