"""Outbound rules on the real registry (``docker-registry`` on loopback): redirects may not move
to another host or port unless allowed, connections go to the address that was checked (DNS
rebinding), and TLS keeps the name (SNI, certificate) while connecting to that address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supplychain.registry import (
    BlobCache,
    NotAllowedError,
    RegistryClient,
    RegistryError,
)
from tests.support.images import push, tiny_layout
from tests.support.net import Redirector, tls_server_files
from tests.support.registry import Registry

REPO = "team/tiny"


@dataclass(frozen=True)
class Pushed:
    registry: Registry
    digest: str


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    with Registry(tmp_path_factory.mktemp("registry")) as registry:
        digest = push(tiny_layout(), "tiny", f"{registry.host}/{REPO}:tiny")
        yield Pushed(registry, digest)


def _client(tmp_path: Path, allowed: set[str], **kwargs: object) -> RegistryClient:
    cache = BlobCache(tmp_path / "cache", 1 << 30)
    insecure = frozenset(h for h in allowed if not h.startswith("127."))
    return RegistryClient(frozenset(allowed), insecure, cache, **kwargs)  # type: ignore[arg-type]


class Answers:
    """A resolver hook answering each look-up from ``answers`` in turn (then the last one)."""

    def __init__(self, *answers: str) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.answers[min(len(self.calls), len(self.answers)) - 1]]


def test_redirect_to_another_loopback_port_is_refused(pushed: Pushed, tmp_path: Path) -> None:
    with Redirector(pushed.registry.url) as front:
        client = _client(tmp_path, {front.host})
        with pytest.raises(NotAllowedError) as refused:
            client.get_manifest(front.host, REPO, "tiny")
        message = str(refused.value)
        assert f"refusing redirect from {front.host} to {pushed.registry.host}" in message
        assert "not an allowlisted registry or redirect host" in message
        assert front.paths == [f"/v2/{REPO}/manifests/tiny"]
        with pytest.raises(NotAllowedError):
            client.get_blob(front.host, REPO, pushed.digest, 1)
    assert f"GET /v2/{REPO}/manifests/tiny" not in pushed.registry.log()  # nothing reached it
    assert client.cache.has(pushed.digest) is False


def test_redirect_host_setting_lets_storage_serve(pushed: Pushed, tmp_path: Path) -> None:
    with Redirector(pushed.registry.url) as front:
        client = _client(tmp_path, {front.host}, redirect_hosts=frozenset({pushed.registry.host}))
        manifest = client.get_manifest(front.host, REPO, "tiny")
        assert manifest.digest == pushed.digest
        layer = manifest_layer(manifest.data)
        path = client.get_blob(front.host, REPO, layer[0], layer[1])
        assert path.stat().st_size == layer[1]
        # an allowlisted registry is a permitted redirect target as well
        both = _client(tmp_path / "b", {front.host, pushed.registry.host})
        assert both.get_manifest(front.host, REPO, pushed.digest).digest == pushed.digest


def manifest_layer(data: bytes) -> tuple[str, int]:
    layer = json.loads(data)["layers"][0]
    return str(layer["digest"]), int(layer["size"])


def test_dns_rebinding_connects_to_the_checked_address(pushed: Pushed, tmp_path: Path) -> None:
    name = f"registry.test:{pushed.registry.port}"
    resolver = Answers("127.0.0.1", "169.254.169.254")
    client = _client(tmp_path, {name}, resolver=resolver)
    # one look-up per request: the check's answer is the address connected to
    assert client.get_manifest(name, REPO, "tiny").digest == pushed.digest
    assert resolver.calls == ["registry.test"]
    # the name now answers a metadata address: refused before any connection
    with pytest.raises(NotAllowedError, match="link-local, metadata or reserved"):
        client.get_manifest(name, REPO, pushed.digest)
    assert resolver.calls == ["registry.test", "registry.test"]


def test_rebinding_between_check_and_connect_has_no_second_lookup(
    pushed: Pushed, tmp_path: Path
) -> None:
    """A name answering 127.0.0.1 once and then an address where nothing listens: every request
    makes one look-up, so each connection goes where its check pointed."""
    name = f"registry.test:{pushed.registry.port}"
    resolver = Answers("127.0.0.1", "127.0.0.1", "127.0.0.7")
    client = _client(tmp_path, {name}, resolver=resolver)
    manifest = client.get_manifest(name, REPO, "tiny")
    digest, size = manifest_layer(manifest.data)
    client.get_blob(name, REPO, digest, size)
    assert len(resolver.calls) == 2
    with pytest.raises(RegistryError, match="ConnectionError"):
        client.get_manifest(name, REPO, "tiny")  # 127.0.0.7 was checked, and is where it went
    assert len(resolver.calls) == 3


def _by_name(tmp_path: Path, name: str) -> RegistryClient:
    """An https client for ``name``, which resolves to 127.0.0.1."""
    cache = BlobCache(tmp_path / "cache", 1 << 30)
    return RegistryClient(frozenset({name}), frozenset(), cache, resolver=Answers("127.0.0.1"))


def test_tls_keeps_the_name_on_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = tls_server_files(tmp_path, "registry.test")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # how an operator trusts a private CA
    with Registry(tmp_path / "registry", tls=(cert, key)) as registry:
        digest = push(tiny_layout(), "tiny", f"{registry.host}/{REPO}:tiny")
        name = f"registry.test:{registry.port}"
        client = _by_name(tmp_path / "a", name)
        assert client.base_url(name).startswith("https://")
        assert client.get_manifest(name, REPO, "tiny").digest == digest
        # the same address under a name the certificate does not carry: refused by TLS
        other = f"other.test:{registry.port}"
        with pytest.raises(RegistryError, match="SSLError"):
            _by_name(tmp_path / "b", other).get_manifest(other, REPO, "tiny")
        # and without our CA the certificate is not trusted at all
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        with pytest.raises(RegistryError, match="SSLError"):
            _by_name(tmp_path / "c", name).get_manifest(name, REPO, "tiny")
