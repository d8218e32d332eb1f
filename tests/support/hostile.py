"""A `serve` process on SQLite or PostgreSQL, and hostile HTTP clients that measure it."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import TOKEN, new_database
from tests.support.service import Server, service_env
from tests.support.tokens import issue

BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def database_url(backend: str, data_dir: Path) -> Iterator[str]:
    """A fresh database: a migrated PostgreSQL database, or SQLite in ``data_dir``."""
    if backend == "postgresql":
        with new_database() as url:
            yield url
    else:
        yield f"sqlite:///{data_dir / 'supplychain.db'}"


@contextlib.contextmanager
def serve(tmp: Path, url: str, extra: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``supplychain serve`` on ``url`` with no in-process workers unless ``extra`` says so."""
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp / "data"),
            "SUPPLYCHAIN_DATABASE_URL": url,
            "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_WORKERS": "0",
            **(extra or {}),
        }
    )
    server = Server(env, tmp / "server.log", tokens=issue(env))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples a process's RSS every 20 ms while in use; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class RawAnswer:
    """What a raw HTTP exchange got back."""

    status: int
    """HTTP status code."""
    body: Any
    """The JSON body decoded."""
    sent: int
    """Body bytes the client managed to send before the answer came."""


def post_stream(
    url: str, path: str, total: int, *, declare: bool = False, chunk: int = 1024 * 1024
) -> RawAnswer:
    """POST ``total`` bytes to ``path`` as a stream (chunked, or with a Content-Length when
    ``declare``), stopping as soon as the server answers; the answer and the bytes sent."""
    host, port = url.removeprefix("http://").split(":")
    framing = f"Content-Length: {total}" if declare else "Transfer-Encoding: chunked"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\nConnection: close\r\n\r\n"
    ).encode()
    block = b" " * chunk
    piece = block if declare else b"%x\r\n%s\r\n" % (chunk, block)
    sent = 0
    answer = b""
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = memoryview(piece)
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break
            if not writable:
                raise AssertionError("server neither reads nor answers")
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
            if not pending:
                sent += chunk
                pending = memoryview(piece)
        sock.setblocking(True)
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
                if _complete(answer):
                    break
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return RawAnswer(status, json.loads(body), sent)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
