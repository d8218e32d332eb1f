"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8.2) on loopback.

:class:`Registry` writes a ``config.yml`` (tmp storage, optional ``notifications`` endpoints,
optional htpasswd basic auth or token auth), starts ``docker-registry serve`` on a free
127.0.0.1 port, waits until ``GET /v2/`` answers, and stops it on exit. :class:`TokenServer` is a
small real token server (distribution ``docs/spec/auth/jwt.md``): an ``http.server`` thread
issuing ES256 JWTs whose self-signed certificate is the registry's ``rootcertbundle``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

REGISTRY_BIN = "docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """``user:$2b$...``: bcrypt, the only hash distribution's htpasswd accepts (test extra)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed}"


@dataclass(frozen=True)
class Endpoint:
    """A ``notifications.endpoints[]`` entry."""

    url: str
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    name: str = "test"
    ignore_media_types: Sequence[str] = ()
    """``ignore.mediatypes``: events of blobs or manifests of these media types are not sent."""
    ignore_actions: Sequence[str] = ()
    """``ignore.actions``: events of these actions are not sent (docs/webhooks.md recommends
    ``pull``: the service's own pulls would otherwise notify it)."""


@dataclass(frozen=True)
class TokenAuth:
    """distribution's ``auth.token`` section."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def _ignore(endpoint: Endpoint) -> dict[str, list[str]]:
    """``ignore:``. distribution 2.8 applies ``actions`` only when ``mediatypes`` names at
    least one type (its ``newIgnoredSink`` returns the sink unfiltered otherwise)."""
    return {
        "mediatypes": list(endpoint.ignore_media_types),
        "actions": list(endpoint.ignore_actions),
    }


class Registry:
    """``docker-registry serve`` on ``127.0.0.1:<free port>`` with storage under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        notifications: Sequence[Endpoint] = (),
        htpasswd: Mapping[str, str] | None = None,
        token: TokenAuth | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = root
        self.tls = tls
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage = root / "data"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.notifications = notifications
        self.htpasswd = htpasswd
        self.token = token
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = root / "registry.log"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if self.tls is not None:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        if self.notifications:
            config["notifications"] = {
                "endpoints": [
                    {
                        "name": e.name,
                        "url": e.url,
                        "headers": {k: list(v) for k, v in e.headers.items()},
                        "timeout": "2s",
                        "threshold": 3,
                        "backoff": "1s",
                        **(
                            {"ignore": _ignore(e)}
                            if e.ignore_actions or e.ignore_media_types
                            else {}
                        ),
                    }
                    for e in self.notifications
                ]
            }
        if self.htpasswd is not None:
            path = self.root / "htpasswd"
            path.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.htpasswd.items()))
            config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(path)}}
        elif self.token is not None:
            t = self.token
            config["auth"] = {
                "token": {
                    "realm": t.realm,
                    "service": t.service,
                    "issuer": t.issuer,
                    "rootcertbundle": str(t.rootcertbundle),
                }
            }
        return config

    def start(self, timeout: float = 30.0) -> Registry:
        path = self.root / "config.yml"
        path.write_text(yaml.safe_dump(self.config()))
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        conn = (
            http.client.HTTPSConnection(
                self.host,
                timeout=2,
                context=ssl._create_unverified_context(),  # noqa: S323
            )
            if self.tls
            else http.client.HTTPConnection(self.host, timeout=2)
        )
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status in (200, 401)
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def push_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        """Upload ``data`` as a blob (monolithic POST + PUT); ``{"digest", "size"}``."""
        import requests

        digest = sha256_digest(data)
        start = requests.post(f"{self.url}/v2/{repository}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        location = self.url + location if location.startswith("/") else location
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=60)
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def put_manifest(self, repository: str, tag: str, document: Any, media_type: str) -> str:
        """PUT ``document`` (JSON) as the manifest ``tag``; its digest."""
        import requests

        body = json.dumps(document).encode()
        put = requests.put(
            f"{self.url}/v2/{repository}/manifests/{tag}",
            data=body,
            headers={"Content-Type": media_type},
            timeout=60,
        )
        assert put.status_code == 201, put.text[:500]
        return sha256_digest(body)

    def blob_data(self, digest: str) -> Path:
        """The file distribution stores a blob's bytes in."""
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """Issues registry bearer tokens at ``http://127.0.0.1:<port>/token``.

    ``users`` may log in with Basic auth, ``refresh_tokens`` (token → user) with an OAuth2 POST;
    anyone else gets 401. Each request is recorded in :attr:`requests` (method, query, user).
    """

    def __init__(
        self,
        root: Path,
        users: Mapping[str, str],
        *,
        refresh_tokens: Mapping[str, str] | None = None,
        service: str = "test-registry",
        issuer: str = "test-issuer",
        expires_in: int = 300,
    ) -> None:
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens or {})
        self.service, self.issuer, self.expires_in = service, issuer, expires_in
        self.requests: list[dict[str, Any]] = []
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = root / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def registry_auth(self, realm: str | None = None) -> TokenAuth:
        return TokenAuth(realm or self.realm, self.service, self.issuer, self.cert_path)

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def issue(self, user: str, scopes: Sequence[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind in ("repository", "registry") and name:  # registry:catalog:*: the catalog
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, query: dict[str, list[str]], user: str | None) -> None:
                server.requests.append({"method": self.command, "query": query, "user": user})
                if user is None:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                token = server.issue(user, query.get("scope", []))
                body = json.dumps(
                    {"token": token, "access_token": token, "expires_in": server.expires_in}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(name) == password:
                        user = name
                self._answer(query, user)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                refresh = (form.get("refresh_token") or [""])[0]
                user = (
                    server.refresh_tokens.get(refresh)
                    if form.get("grant_type") == ["refresh_token"]
                    else None
                )
                self._answer(form, user)

        return Handler


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
