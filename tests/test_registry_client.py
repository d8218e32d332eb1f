"""supplychain.registry against Debian's real ``docker-registry`` (distribution 2.8.2) on loopback:
images built on the fly with umoci, pushed with skopeo; no mocks."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from supplychain.interface import ImageTarget
from supplychain.mediatypes import OCI_INDEX, OCI_MANIFEST
from supplychain.reference import parse_reference
from supplychain.registry import (
    AuthError,
    BlobCache,
    BlobTooLargeError,
    Credentials,
    DigestMismatchError,
    DockerConfigCredentials,
    NotAllowedError,
    NotFoundError,
    RegistryClient,
    RegistryError,
    StaticCredentials,
    check_outbound_url,
    parse_www_authenticate,
)
from supplychain.registry.index import MAX_INDEX_ENTRIES, platform_images
from supplychain.stages.source import RegistrySource
from tests.support.registry import Endpoint, Registry, TokenServer, sha256_digest
from tests.support.tools import trivy

REPO = "team/app"
SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub PAT shape, for Trivy's scanner
LAYER_FILES = (
    {
        "etc/os-release": 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n',
        "app/hello.txt": "hello\n",
    },
    {"app/settings.py": f'GITHUB_TOKEN = "{SECRET}"\n'},
)


def _run(*cmd: str | Path) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _tar(path: Path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(p) for f in files for p in Path(f).parents if str(p) != "."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class Image:
    layout: Path
    tag: str
    digest: str
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A two-layer OCI image built with umoci (``init``/``new``/``raw add-layer``)."""
    root = tmp_path_factory.mktemp("image")
    layout = root / "oci"
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:v1")
    for number, files in enumerate(LAYER_FILES):
        _tar(root / f"layer{number}.tar", files)
        _run("umoci", "raw", "add-layer", "--image", f"{layout}:v1", root / f"layer{number}.tar")
    index = json.loads((layout / "index.json").read_text())
    (desc,) = [
        d
        for d in index["manifests"]
        if d["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    ]
    hexdigest = desc["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / hexdigest).read_bytes())
    return Image(layout, "v1", desc["digest"], manifest)


def push(image: Image, dest: str, creds: str | None = None) -> str:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST``; returns the pushed manifest digest."""
    digestfile = image.layout.parent / f"digest-{time.monotonic_ns()}"
    extra = ["--dest-creds", creds] if creds else []
    _run(
        "skopeo", "copy", "--quiet", "--preserve-digests", "--format", "oci",
        "--dest-tls-verify=false", *extra, "--digestfile", digestfile,
        f"oci:{image.layout}:{image.tag}", f"docker://{dest}",
    )  # fmt: skip
    return digestfile.read_text().strip()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, image: Image) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        assert push(image, f"{reg.host}/{REPO}:v1") == image.digest
        yield reg


def make_client(tmp_path: Path, *hosts: str, **kwargs: Any) -> RegistryClient:
    cache = BlobCache(tmp_path / "cache", 1 << 30)
    return RegistryClient(frozenset(hosts), frozenset(), cache, **kwargs)


def cache_files(client: RegistryClient) -> list[str]:
    return sorted(os.listdir(client.cache.root / "sha256"))


# -- resolve, manifests, blobs -------------------------------------------------------------


def test_resolve_tag_is_pushed_digest(registry: Registry, image: Image, tmp_path: Path) -> None:
    client = make_client(tmp_path, registry.host)
    descriptor = client.resolve(parse_reference(f"{registry.host}/{REPO}:v1"))
    assert descriptor.digest == image.digest
    assert descriptor.media_type == OCI_MANIFEST
    manifest = client.get_manifest(registry.host, REPO, image.digest)
    assert sha256_digest(manifest.data) == image.digest == manifest.digest
    assert descriptor.size == len(manifest.data)
    pinned = client.resolve(parse_reference(f"{registry.host}/{REPO}@{image.digest}"))
    assert pinned == descriptor
    assert client.list_tags(registry.host, REPO) == ["v1"]


def test_missing_manifests(registry: Registry, image: Image, tmp_path: Path) -> None:
    client = make_client(tmp_path, registry.host)
    sig_tag = image.digest.replace(":", "-") + ".sig"
    assert client.try_get_manifest(registry.host, REPO, sig_tag) is None
    assert not client.manifest_exists(registry.host, REPO, sig_tag)
    assert client.manifest_exists(registry.host, REPO, "v1")
    with pytest.raises(NotFoundError):
        client.get_manifest(registry.host, REPO, sig_tag)
    with pytest.raises(NotFoundError):
        client.get_manifest(registry.host, "team/none", "v1")
    with pytest.raises(RegistryError):  # never reaches the URL
        client.get_manifest(registry.host, REPO, "../../v2/_catalog")


def test_get_blob_verified_and_cached(registry: Registry, image: Image, tmp_path: Path) -> None:
    client = make_client(tmp_path, registry.host)
    layer = image.manifest["layers"][0]
    path = client.get_blob(registry.host, REPO, layer["digest"], layer["size"])
    assert path == client.cache.path(layer["digest"]) and path.is_file()
    assert sha256_digest(path.read_bytes()) == layer["digest"]
    assert client.get_blob(registry.host, REPO, layer["digest"], layer["size"]) == path
    with pytest.raises(DigestMismatchError):  # a descriptor stating another size
        client.get_blob(registry.host, REPO, layer["digest"], layer["size"] + 1)
    small = make_client(tmp_path / "small", registry.host, max_blob_bytes=10)
    with pytest.raises(BlobTooLargeError):
        small.get_blob(registry.host, REPO, layer["digest"], layer["size"])


def test_pull_writes_layout_trivy_reads(registry: Registry, image: Image, tmp_path: Path) -> None:
    client = make_client(tmp_path, registry.host)
    source = RegistrySource(client, tmp_path / "work")
    target = ImageTarget(registry.host, REPO, image.digest, "v1")
    pulled = source.pull(target)
    config = json.loads(pulled.config)
    assert pulled.platform == f"{config['os']}/{config['architecture']}"
    assert sha256_digest(pulled.manifest) == image.digest
    assert sha256_digest(pulled.config) == image.manifest["config"]["digest"]
    assert [layer.digest for layer in pulled.layers] == [
        d["digest"] for d in image.manifest["layers"]
    ]
    for layer in pulled.layers:
        assert layer.path.parent == client.cache.root / "sha256"
        assert sha256_digest(layer.path.read_bytes()) == layer.digest
    layout = pulled.layout_dir
    assert layout.parent == tmp_path / "work"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    (desc,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert desc["digest"] == image.digest and desc["mediaType"] == OCI_MANIFEST
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert len(list((layout / "blobs" / "sha256").iterdir())) == 2 + len(pulled.layers)

    proc = subprocess.run(
        [trivy(), "image", "--input", str(layout), "--format", "json", "--scanners", "secret",
         "--skip-db-update", "--offline-scan", "--cache-dir", str(tmp_path / "trivy"), "--quiet"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    secrets = [s for r in report.get("Results", []) for s in r.get("Secrets", [])]
    assert any(s["RuleID"] == "github-pat" for s in secrets), report


# -- allowlist --------------------------------------------------------------------------------


def test_host_outside_allowlist_sends_nothing(image: Image, tmp_path: Path) -> None:
    connections: list[object] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(conn)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{port}"
        client = make_client(tmp_path, "registry.example.com", f"localhost:{port}")
        layer = image.manifest["layers"][0]
        calls: list[Callable[[], object]] = [
            lambda: client.resolve(parse_reference(f"{host}/{REPO}:v1")),
            lambda: client.get_manifest(host, REPO, image.digest),
            lambda: client.get_blob(host, REPO, layer["digest"], layer["size"]),
            lambda: client.manifest_exists(host, REPO, "v1"),
            lambda: client.list_tags(host, REPO),
            lambda: RegistrySource(client, tmp_path / "w").pull(
                ImageTarget(host, REPO, image.digest)
            ),
        ]
        for call in calls:
            with pytest.raises(NotAllowedError):
                call()
        cached = make_client(tmp_path / "x", "registry.example.com")
        data = b"cached"
        cached.cache.put_stream(sha256_digest(data), [data], len(data))
        with pytest.raises(NotAllowedError):
            cached.get_blob(host, REPO, sha256_digest(data), len(data))
        time.sleep(0.3)
        assert connections == []
        assert cache_files(client) == []
    finally:
        stop.set()
        thread.join()
        listener.close()


# -- tampering ------------------------------------------------------------------------------


def test_tampered_blob_and_manifest(tmp_path: Path, image: Image) -> None:
    with Registry(tmp_path / "registry") as reg:
        push(image, f"{reg.host}/{REPO}:v1")
        layer = image.manifest["layers"][-1]
        data_file = reg.blob_data(layer["digest"])
        original = data_file.read_bytes()
        data_file.write_bytes(bytes(b ^ 0xFF for b in original))  # same size, other bytes
        client = make_client(tmp_path, reg.host)
        with pytest.raises(DigestMismatchError):
            client.get_blob(reg.host, REPO, layer["digest"], layer["size"])
        assert cache_files(client) == []
        work = tmp_path / "work"
        with pytest.raises(DigestMismatchError):
            RegistrySource(client, work).pull(ImageTarget(reg.host, REPO, image.digest, "v1"))
        assert list(work.iterdir()) == []
        assert layer["digest"].removeprefix("sha256:") not in cache_files(client)
        assert all(not name.startswith(".tmp") for name in cache_files(client))

        manifest_file = reg.blob_data(image.digest)
        doc = json.loads(manifest_file.read_bytes())
        doc["annotations"] = {"tampered": "yes"}
        manifest_file.write_bytes(json.dumps(doc).encode())
        with pytest.raises(DigestMismatchError):
            client.get_manifest(reg.host, REPO, image.digest)
        with pytest.raises(DigestMismatchError):  # Docker-Content-Digest disagrees with the bytes
            client.resolve(parse_reference(f"{reg.host}/{REPO}:v1"))


# -- index fan-out --------------------------------------------------------------------------


def test_index_fan_out(registry: Registry, image: Image, tmp_path: Path) -> None:
    client = make_client(tmp_path, registry.host)
    manifest = client.get_manifest(registry.host, REPO, image.digest)
    config = json.loads(registry.blob_data(image.manifest["config"]["digest"]).read_bytes())
    platform = {"os": config["os"], "architecture": config["architecture"]}
    entry = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(manifest.data)}
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**entry, "platform": platform},
            {
                **entry,
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
        ],
    }
    body = json.dumps(index).encode()
    put = requests.put(
        f"{registry.url}/v2/{REPO}/manifests/multi",
        data=body, headers={"Content-Type": OCI_INDEX}, timeout=10,
    )  # fmt: skip
    assert put.status_code == 201, put.text
    descriptor = client.resolve(parse_reference(f"{registry.host}/{REPO}:multi"))
    assert descriptor.media_type == OCI_INDEX and descriptor.digest == sha256_digest(body)
    fetched = client.get_manifest(registry.host, REPO, descriptor.digest)
    expected = f"{config['os']}/{config['architecture']}"
    found = platform_images(fetched.data, max_entries=MAX_INDEX_ENTRIES)
    # The annotated entry names no sibling (BuildKit's rule), so a runtime could pull it: an image.
    assert found == [
        (image.digest, OCI_MANIFEST, expected),
        (image.digest, OCI_MANIFEST, "unknown/unknown"),
    ]
    with pytest.raises(RegistryError, match="index"):
        RegistrySource(client, tmp_path / "work").pull(
            ImageTarget(registry.host, REPO, descriptor.digest)
        )


# -- notifications (the helper's endpoints) ---------------------------------------------------


def test_registry_notifications(tmp_path: Path, image: Image) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.headers.get("Authorization"), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        endpoint = Endpoint(url, {"Authorization": ["Bearer hook-secret"]})
        with Registry(tmp_path / "registry", notifications=[endpoint]) as reg:
            push(image, f"{reg.host}/{REPO}:v1")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                events = [e for _, doc in received for e in doc["events"]]
                if any(e["target"].get("digest") == image.digest for e in events):
                    break
                time.sleep(0.1)
        assert any(e["target"].get("tag") == "v1" for e in events)
        assert {auth for auth, _ in received} == {"Bearer hook-secret"}
    finally:
        server.shutdown()
        server.server_close()


# -- authentication -----------------------------------------------------------------------


def test_basic_auth_htpasswd(tmp_path: Path, image: Image) -> None:
    with Registry(tmp_path / "registry", htpasswd={"alice": "s3cret-pw"}) as reg:
        push(image, f"{reg.host}/{REPO}:v1", creds="alice:s3cret-pw")
        ref = parse_reference(f"{reg.host}/{REPO}:v1")
        with pytest.raises(AuthError) as anonymous:
            make_client(tmp_path / "a", reg.host).resolve(ref)
        wrong = StaticCredentials({reg.host: Credentials("alice", "wrong-pw")})
        with pytest.raises(AuthError) as denied:
            make_client(tmp_path / "b", reg.host, credentials=wrong).resolve(ref)
        assert "wrong-pw" not in str(denied.value) and "s3cret" not in str(anonymous.value)
        good = StaticCredentials({reg.host: Credentials("alice", "s3cret-pw")})
        assert "s3cret-pw" not in repr(good.get(reg.host))
        client = make_client(tmp_path / "c", reg.host, credentials=good)
        assert client.resolve(ref).digest == image.digest
        config = tmp_path / "docker" / "config.json"
        config.parent.mkdir()
        auth = base64.b64encode(b"alice:s3cret-pw").decode()
        config.write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        store = DockerConfigCredentials(str(config))
        assert store.get(reg.host) == Credentials("alice", "s3cret-pw")
        assert store.get("other.example.com") is None
        from_docker = make_client(tmp_path / "d", reg.host, credentials=store)
        assert from_docker.resolve(ref).digest == image.digest
        pulled = RegistrySource(client, tmp_path / "work").pull(
            ImageTarget(reg.host, REPO, image.digest)
        )
        assert len(pulled.layers) == len(LAYER_FILES)


def test_token_auth_bearer_flow(tmp_path: Path, image: Image) -> None:
    users = {"bob": "t0ken-pw"}
    with TokenServer(tmp_path, users, refresh_tokens={"refresh-xyz": "bob"}) as tokens:
        with Registry(tmp_path / "registry", token=tokens.registry_auth()) as reg:
            push(image, f"{reg.host}/{REPO}:v1", creds="bob:t0ken-pw")
            ref = parse_reference(f"{reg.host}/{REPO}:v1")
            with pytest.raises(AuthError):
                make_client(tmp_path / "anon", reg.host).resolve(ref)

            tokens.requests.clear()
            creds = StaticCredentials({reg.host: Credentials("bob", "t0ken-pw")})
            client = make_client(tmp_path / "c", reg.host, credentials=creds)
            assert client.resolve(ref).digest == image.digest
            (request,) = tokens.requests
            assert request["user"] == "bob" and request["method"] == "GET"
            assert request["query"]["scope"] == [f"repository:{REPO}:pull"]
            assert request["query"]["service"] == ["test-registry"]
            pulled = RegistrySource(client, tmp_path / "work").pull(
                ImageTarget(reg.host, REPO, image.digest)
            )
            assert len(pulled.layers) == len(LAYER_FILES)
            assert len(tokens.requests) == 1  # the token was cached per (registry, scope)

            refresh = StaticCredentials({reg.host: Credentials(identity_token="refresh-xyz")})
            client = make_client(tmp_path / "r", reg.host, credentials=refresh)
            assert client.resolve(ref).digest == image.digest
            assert tokens.requests[-1]["method"] == "POST" and tokens.requests[-1]["user"] == "bob"


def test_token_realm_to_metadata_address_refused(tmp_path: Path, image: Image) -> None:
    with TokenServer(tmp_path, {}) as tokens:
        auth = tokens.registry_auth(realm="http://169.254.169.254/latest/meta-data/token")
        with Registry(tmp_path / "registry", token=auth) as reg:
            client = make_client(tmp_path, reg.host)
            with pytest.raises(NotAllowedError):
                client.resolve(parse_reference(f"{reg.host}/{REPO}:v1"))
        assert tokens.requests == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://auth.example.com/token", None),
        ("http://127.0.0.1:5001/token", True),
        ("http://localhost:5001/token", True),
        ("http://[::1]:5001/token", True),
        ("https://10.1.2.3/token", True),
        ("http://10.1.2.3/token", False),
        ("https://169.254.169.254/latest/meta-data/", False),
        ("http://169.254.169.254/", False),
        ("https://[fe80::1]/token", False),
        ("https://[fd00:ec2::254]/token", False),
        ("https://[::ffff:169.254.169.254]/token", False),
        ("https://0.0.0.0/token", False),
        ("https://user:pw@auth.example.com/token", False),
        ("file:///etc/passwd", False),
        ("ftp://auth.example.com/token", False),
    ],
)
def test_check_outbound_url(url: str, ok: bool | None) -> None:
    if ok is None:  # needs DNS: only the scheme rule is certain offline
        try:
            check_outbound_url(url)
        except NotAllowedError as exc:
            assert "resolve" in str(exc)
        return
    if ok:
        check_outbound_url(url)
    else:
        with pytest.raises(NotAllowedError):
            check_outbound_url(url)


def test_parse_www_authenticate() -> None:
    (bearer,) = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull,push"'
    )
    assert bearer.scheme == "bearer"
    assert dict(bearer.params) == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull,push",
    }
    basic, other = parse_www_authenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=x')
    assert basic.scheme == "basic" and basic.params["realm"] == 'a "quoted" realm'
    assert other.scheme == "bearer" and other.params == {"realm": "x"}


# -- cache ----------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return sha256_digest(data)


def test_cache_put_verify_and_reject(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 1 << 20)
    data = b"hello world" * 100
    path = cache.put_stream(_digest(data), [data[:7], data[7:]], len(data))
    assert path.read_bytes() == data and cache.has(_digest(data))
    other = b"other bytes"
    with pytest.raises(DigestMismatchError):
        cache.put_stream(_digest(other), [b"not the bytes"], None)
    with pytest.raises(DigestMismatchError):
        cache.put_stream(_digest(other), [other], len(other) - 1)
    with pytest.raises(DigestMismatchError):
        cache.put_stream(_digest(other), [other], len(other) + 1)
    with pytest.raises(BlobTooLargeError):
        cache.put_stream(_digest(other), [other], None, max_size=3)
    assert os.listdir(tmp_path / "c" / "sha256") == [path.name]
    for bad in ("sha256:../../etc/passwd", "sha256:" + "A" * 64, "sha512:" + "a" * 64, "x"):
        with pytest.raises(RegistryError):
            cache.path(bad)
    assert not (tmp_path / "etc").exists()


def test_cache_lru_eviction(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 250)
    blobs = [bytes([n]) * 100 for n in range(4)]
    paths = []
    for n, blob in enumerate(blobs[:2]):
        paths.append(cache.put_stream(_digest(blob), [blob], 100))
        os.utime(paths[-1], (1000 + n, 1000 + n))
    assert cache.has(_digest(blobs[0]))  # touch: blob 1 is now least recently used
    cache.put_stream(_digest(blobs[2]), [blobs[2]], 100)
    assert not cache.has(_digest(blobs[1]))
    assert cache.has(_digest(blobs[0])) and cache.has(_digest(blobs[2]))
    with cache.pin() as keep:
        keep(_digest(blobs[0]))
        os.utime(cache.path(_digest(blobs[0])), (1, 1))  # oldest, but pinned
        cache.put_stream(_digest(blobs[3]), [blobs[3]], 100)
        assert cache.has(_digest(blobs[0])) and not cache.has(_digest(blobs[2]))
    assert cache.size() <= 250
