"""Tests for tests/support/images.py: real images built with debootstrap/pip/npm/umoci,
pushed with skopeo to a real ``docker-registry`` (distribution) on loopback."""

from __future__ import annotations

import http.client
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import (
    OCI_MANIFEST,
    PURGED_DEB_PACKAGE,
    app_layout,
    layer_paths,
    layout_digest,
    manifest,
    push,
    sha256_digest,
    tag_digests,
    tiny_layout,
)
from tests.support.registry import Registry


def _layer_members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer, "r:gz") as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def _read_member(layer: Path, name: str) -> str:
    with tarfile.open(layer, "r:gz") as tar:
        for member in tar:
            if member.name.removeprefix("./") == name:
                handle = tar.extractfile(member)
                assert handle is not None
                return handle.read().decode()
    raise KeyError(name)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real distribution registry on a free loopback port; yields ``host:port``."""
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running.host


def _fetch_manifest(registry: str, repo: str, ref: str) -> tuple[bytes, str]:
    conn = http.client.HTTPConnection(registry, timeout=10)
    try:
        conn.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return body, str(resp.headers["Content-Type"])
    finally:
        conn.close()


def test_tiny_layout() -> None:
    started = time.monotonic()
    layout = tiny_layout()
    assert time.monotonic() - started < 60
    assert tag_digests(layout) == {"tiny": layout_digest(layout, "tiny")}
    index = json.loads((layout / "index.json").read_text())
    assert [d["mediaType"] for d in index["manifests"]] == [OCI_MANIFEST]
    doc = manifest(layout, "tiny")
    assert [d["mediaType"] for d in doc["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ]
    (layer,) = layer_paths(layout, "tiny")
    assert 'VERSION_ID="12"' in _read_member(layer, "etc/os-release")
    metadata = _read_member(
        layer, "usr/local/lib/python3.11/site-packages/urllib3-1.23.dist-info/METADATA"
    )
    assert "Version: 1.23" in metadata


def test_app_layout_contents() -> None:
    layout = app_layout()
    digests = tag_digests(layout)
    assert set(digests) == {"base", "app", "app-deleted"}
    for tag, digest in digests.items():
        assert layout_digest(layout, tag) == digest

    base_layers = layer_paths(layout, "base")
    app_layers = layer_paths(layout, "app")
    assert len(base_layers) == 1
    assert app_layers[:1] == base_layers and len(app_layers) == 2
    assert layer_paths(layout, "app-deleted")[:2] == app_layers

    status = _read_member(base_layers[0], "var/lib/dpkg/status")
    assert f"Package: {PURGED_DEB_PACKAGE}\n" in status
    assert "Package: base-files\n" in status
    base_members = _layer_members(base_layers[0])
    assert "etc/resolv.conf" not in base_members and "usr/bin/apt-get" in base_members
    assert not [
        n for n in base_members if n.startswith(("dev/", "proc/", "sys/")) and "/" in n[:-1]
    ]

    site = "usr/local/lib/python3.11/site-packages"
    app_members = _layer_members(app_layers[1])
    assert f"{site}/jinja2/__init__.py" in app_members
    assert "Version: 2.19.0" in _read_member(
        app_layers[1], f"{site}/requests-2.19.0.dist-info/METADATA"
    )
    assert "Version: 1.23" in _read_member(app_layers[1], f"{site}/urllib3-1.23.dist-info/METADATA")
    lodash = json.loads(_read_member(app_layers[1], "app/node_modules/lodash/package.json"))
    assert lodash["version"] == "4.17.15"
    minimist = json.loads(_read_member(app_layers[1], "app/node_modules/minimist/package.json"))
    assert minimist["version"] == "1.2.0"


def test_app_deleted_whiteouts() -> None:
    layout = app_layout()
    top = layer_paths(layout, "app-deleted")[-1]
    names = set(_layer_members(top))
    site = "usr/local/lib/python3.11/site-packages"
    assert f"{site}/.wh.jinja2" in names
    assert f"{site}/.wh.Jinja2-2.10.dist-info" in names
    assert f"var/lib/dpkg/info/.wh.{PURGED_DEB_PACKAGE}.list" in names
    assert any(n.endswith(f"/.wh.{PURGED_DEB_PACKAGE}") for n in names)  # its doc dir
    status = _read_member(top, "var/lib/dpkg/status")
    assert f"Package: {PURGED_DEB_PACKAGE}\n" not in status
    assert "Package: base-files\n" in status


@pytest.mark.parametrize(("which", "tag"), [("tiny", "tiny"), ("app", "app-deleted")])
def test_push_returns_registry_digest(registry: str, which: str, tag: str) -> None:
    layout = tiny_layout() if which == "tiny" else app_layout()
    digest = push(layout, tag, f"{registry}/team/{which}:v1")
    body, content_type = _fetch_manifest(registry, f"team/{which}", "v1")
    assert content_type == OCI_MANIFEST
    assert digest == sha256_digest(body)
    assert digest == layout_digest(layout, tag)  # the layout's manifest, byte for byte
    by_digest, _ = _fetch_manifest(registry, f"team/{which}", digest)
    assert by_digest == body
