"""The OCI 1.1 referrers *API* path (push answered with ``OCI-Subject``, lookup through
``GET /v2/<name>/referrers/<digest>``).

No registry with the referrers API is installable here (Debian's distribution is 2.8; zot and
distribution 3 are in neither Debian, PyPI nor npm), so :class:`FakeReferrersApiProxy` (a FAKE of
that API only) sits in front of the real ``docker-registry``: every request is forwarded to it
unchanged, and the proxy adds what distribution-spec v1.1 requires of a registry with the API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from supplychain.interface import ImageTarget
from supplychain.registry import BlobCache, RegistryClient
from supplychain.signatures import KeyFileSigner, generate_key
from supplychain.signatures.cosign import attest_image, sign_image
from supplychain.signatures.statements import VSA, statement
from supplychain.signatures.storage import SignatureStore, fallback_tag
from supplychain.stages.verifier import SignatureVerifier, TrustPolicy
from tests.support.images import push, tiny_layout
from tests.support.registry import Registry


class FakeReferrersApiProxy:
    """FAKE OCI 1.1 referrers API in front of a real distribution 2.8 registry."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.referrers: dict[str, list[dict[str, Any]]] = {}
        self.api_calls = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                if self.command == "GET" and "/referrers/" in self.path:
                    proxy.api_calls += 1
                    digest = self.path.rsplit("/", 1)[1].split("?", 1)[0]
                    index = {
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": proxy.referrers.get(digest, []),
                    }
                    return self._send(200, {"Content-Type": index["mediaType"]}, index)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = requests.request(
                    self.command,
                    f"{proxy.upstream}{self.path}",
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=10,
                )
                out = {
                    k: v.replace(proxy.upstream, proxy.url)
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                }
                if (
                    self.command == "PUT"
                    and "/manifests/" in self.path
                    and answer.status_code == 201
                ):
                    document = json.loads(body or b"{}")
                    subject = document.get("subject")
                    if isinstance(subject, dict):
                        out["OCI-Subject"] = subject["digest"]
                        proxy.referrers.setdefault(subject["digest"], []).append(
                            {
                                "mediaType": document["mediaType"],
                                "digest": answer.headers["Docker-Content-Digest"],
                                "size": len(body or b""),
                                "artifactType": document.get("artifactType"),
                            }
                        )
                self._send(answer.status_code, out, answer.content)

            def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[FakeReferrersApiProxy]:
    with Registry(tmp_path / "registry") as registry:
        fake = FakeReferrersApiProxy(registry.url)
        yield fake
        fake.server.shutdown()


def test_referrers_api_path_writes_no_fallback_tag_and_lists_through_the_api(
    proxy: FakeReferrersApiProxy, tmp_path: Path
) -> None:
    digest = push(tiny_layout(), "tiny", f"{proxy.host}/team/api:v1")
    client = RegistryClient(frozenset({proxy.host}), frozenset(), BlobCache(tmp_path / "c", 10**9))
    target = ImageTarget(proxy.host, "team/api", digest)
    signer = KeyFileSigner(generate_key())
    store = SignatureStore(client)
    sign_image(store, target, signer, mode="referrers")
    attest_image(store, target, signer, statement(target, VSA, {}), VSA, mode="referrers")
    assert len(proxy.referrers[digest]) == 2
    assert client.try_get_manifest(proxy.host, "team/api", fallback_tag(digest)) is None
    referrers = store.referrers(target)
    assert [r.via for r in referrers] == ["referrers-api", "referrers-api"]
    manifest = client.get_manifest(proxy.host, "team/api", digest).data
    trust = TrustPolicy(keys={signer.key_id: signer.public_key})
    evidence = SignatureVerifier(client, trust).verify_target(target, manifest)
    assert sorted(e.kind for e in evidence) == ["attestation:referrer", "sigstore-bundle"]
    assert all(e.verified for e in evidence) and proxy.api_calls >= 2
