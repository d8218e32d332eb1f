"""Reads a layer's decompressed stream ahead in a thread of its own, so that inflating (and
hashing the blob) overlaps with parsing the tar in the reader's thread.

``isal``, ``zstandard`` and ``hashlib`` release the GIL while they work, so on two cores the layer
takes about as long as inflating it alone, not inflating plus parsing. At most ``depth`` chunks
wait in memory (the reader reserves them from the decompressor pool); an error of the stream is
raised by the reader's next :meth:`Prefetch.read`, where it would have been raised without the
thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["Prefetch"]


class Prefetch:
    """``read(size)`` over the chunks ``produce()`` returns, produced ahead in a thread (an empty
    chunk ends the stream). Use it as a context manager: leaving it stops the thread and waits
    for it, so the stream under ``produce`` may be closed afterwards."""

    def __init__(self, produce: Callable[[], bytes], depth: int) -> None:
        self._produce = produce
        self._depth = depth
        self._items: deque[bytes | BaseException] = deque()
        self._rest = b""
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="layer-inflate", daemon=True)

    def __enter__(self) -> Prefetch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            item: bytes | BaseException
            try:
                item = self._produce()
            except BaseException as exc:  # handed to the reader, raised there
                item = exc
            with self._ready:
                while len(self._items) >= self._depth and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                self._items.append(item)
                self._ready.notify_all()
            if not isinstance(item, bytes) or not item:
                return

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes of the stream (at most ``size`` when it is not negative), ``b""`` at
        its end; raises what the stream raised."""
        if not self._rest:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            with self._ready:
                while not self._items:
                    self._ready.wait()
                item = self._items.popleft()
                self._ready.notify_all()
            if isinstance(item, BaseException):
                self._error = item
                raise item
            if not item:
                self._ended = True
                return b""
            self._rest = item
        if 0 <= size < len(self._rest):
            out, self._rest = self._rest[:size], self._rest[size:]
            return out
        out, self._rest = self._rest, b""
        return out
