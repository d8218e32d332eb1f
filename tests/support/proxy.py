"""A TCP proxy the test controls: put it in front of PostgreSQL or the registry and cut it.

``down()`` closes the listening socket (new connections are refused, as with a stopped server)
and resets every open connection; ``up()`` listens on the same port again. Threads only, bounded:
one accept thread, two pump threads per connection, at most ``max_connections`` at a time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from tests.support.registry import free_port

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` while up."""

    def __init__(self, target_host: str, target_port: int, *, max_connections: int = 64) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        """Accept connections (again)."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)

    def __enter__(self) -> TcpProxy:
        self.up()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._listener is not listener or len(self._open) >= 2 * self.max_connections:
                    _reset(client)
                    continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                done = src in self._open and dst not in self._open
                self._open.discard(src)
            if done:
                src.close()
                dst.close()


def _reset(sock: socket.socket) -> None:
    """End the connection as a stopped server does: the peer sees it end at once.

    The shutdown comes first: a pump thread blocked in ``recv`` on this socket keeps it open
    past ``close()`` (the kernel frees it when that call returns), so without it the peer
    would wait forever for an answer on a connection nobody serves, and never learn why."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
