"""Gzip layers inflated while the pull downloads them; the copy is used only when it hashes to
the config's diff_id, and a decompression bomb or a corrupt stream leaves the layer as pulled.

Trivy's findings over the inflated layout equal a direct ``trivy image`` on the pulled layout
(layer digests included) in tests/test_vuln_scan.py, which pulls through the real registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest

from supplychain.interface import ImageTarget
from supplychain.registry.inflate import LayerInflater
from supplychain.stages.plainlayout import plain_layout
from supplychain.stages.source import RegistrySource
from tests.support.registry import Registry
from tests.test_registry_client import REPO, Image, image, make_client, registry

__all__ = ["image", "registry"]  # the real registry with the two-layer image pushed


def _tar(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size // 2) + bytes(size - size // 2)))
    return buffer.getvalue()


def _inflate(blob: bytes, diff_id: str, directory: Path, max_bytes: int = 1 << 30) -> Path | None:
    inflater = LayerInflater(diff_id, directory, max_bytes)
    for start in range(0, len(blob), 256 * 1024):
        inflater.feed(blob[start : start + 256 * 1024])
    return inflater.result()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_a_gzip_stream_is_written_uncompressed_under_its_diff_id(tmp_path: Path) -> None:
    plain = _tar(3 << 20)
    path = _inflate(gzip.compress(plain), _digest(plain), tmp_path)
    assert path == tmp_path / _digest(plain)[7:]
    assert path.read_bytes() == plain
    # several gzip members one after another (what pigz and some builders write)
    half = len(plain) // 2
    members = gzip.compress(plain[:half]) + gzip.compress(plain[half:])
    (tmp_path / "members").mkdir()
    again = _inflate(members, _digest(plain), tmp_path / "members")
    assert again is not None and again.read_bytes() == plain


def test_a_copy_that_is_not_the_diff_id_is_not_kept(tmp_path: Path) -> None:
    plain = _tar(1 << 20)
    assert _inflate(gzip.compress(plain), _digest(plain + b"x"), tmp_path) is None
    assert _inflate(gzip.compress(plain)[:-100], _digest(plain), tmp_path) is None  # truncated
    assert _inflate(plain, _digest(plain), tmp_path) is None  # not gzip
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_a_decompression_bomb_is_stopped_at_the_limit(tmp_path: Path) -> None:
    bomb = gzip.compress(bytes(256 << 20), 9)  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < 1 << 20
    assert _inflate(bomb, _digest(b""), tmp_path, max_bytes=8 << 20) is None
    assert list(tmp_path.iterdir()) == []


def test_a_bomb_under_the_size_limit_is_stopped_by_its_ratio(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bomb = gzip.compress(bytes(256 << 20), 9)  # ratio ~1000: past 100 times its size + 64 MiB
    with caplog.at_level(logging.INFO, logger="supplychain.registry.inflate"):
        assert _inflate(bomb, _digest(bytes(256 << 20)), tmp_path, max_bytes=1 << 30) is None
    assert "more than 100 times its size" in caplog.text
    assert list(tmp_path.iterdir()) == []
    # the same ratio within the slack (a small, very compressible layer) is still inflated
    small = bytes(32 << 20)
    kept = _inflate(gzip.compress(small, 9), _digest(small), tmp_path)
    assert kept is not None and kept.stat().st_size == len(small)


def test_an_abandoned_download_keeps_nothing(tmp_path: Path) -> None:
    plain = _tar(1 << 20)
    inflater = LayerInflater(_digest(plain), tmp_path, 1 << 30)
    inflater.feed(gzip.compress(plain))
    inflater.abandon()
    assert inflater.result() is None
    assert list(tmp_path.iterdir()) == []


def test_the_pull_inflates_each_layer_and_trivy_gets_them_plain(
    registry: Registry, image: Image, tmp_path: Path
) -> None:
    client = make_client(tmp_path, registry.host)
    target = ImageTarget(registry.host, REPO, image.digest, "v1")
    pulled = RegistrySource(client, tmp_path / "work").pull(target)
    diff_ids = json.loads(pulled.config)["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(pulled.layers) == 2
    for layer, diff_id in zip(pulled.layers, diff_ids, strict=True):
        assert layer.plain is not None and _digest(layer.plain.read_bytes()) == diff_id
        with gzip.open(layer.path) as blob:
            assert blob.read() == layer.plain.read_bytes()
    replaced = plain_layout(pulled, tmp_path / "plain")
    assert replaced == dict(zip(diff_ids, [layer.digest for layer in pulled.layers], strict=True))
    index = json.loads((tmp_path / "plain" / "index.json").read_text())
    blobs = tmp_path / "plain" / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    assert [entry["digest"] for entry in manifest["layers"]] == diff_ids
    assert {entry["mediaType"] for entry in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar"
    }

    # blobs already in the cache are not streamed: no copy, Trivy reads them as pulled
    second = RegistrySource(client, tmp_path / "work2").pull(target)
    assert [layer.plain for layer in second.layers] == [None, None]
    assert plain_layout(second, tmp_path / "plain2") is None


def test_a_layer_over_the_limit_is_left_compressed_and_the_pull_succeeds(
    registry: Registry, image: Image, tmp_path: Path
) -> None:
    client = make_client(tmp_path, registry.host)
    target = ImageTarget(registry.host, REPO, image.digest, "v1")
    pulled = RegistrySource(client, tmp_path / "work", max_layer_bytes=512).pull(target)
    assert [layer.plain for layer in pulled.layers] == [None, None]
    assert [_digest(layer.path.read_bytes()) for layer in pulled.layers] == [
        entry["digest"] for entry in image.manifest["layers"]
    ]
