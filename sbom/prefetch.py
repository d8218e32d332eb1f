"""Reads a stream ahead in a thread of its own: a layer's blob is read and hashed in one, inflated
in another, and its tar parsed in the reader's thread, all three at once.

``isal``, ``zstandard`` and ``hashlib`` release the GIL while they work, so on two cores the layer
takes about as long as inflating it alone, not hashing plus inflating plus parsing. At most
``depth`` chunks wait in memory (the reader reserves them from the decompressor pool); an error
of the stream is raised by the reader's next :meth:`Prefetch.read`, where it would have been
raised without the thread. Chunks are handed over through C queues
(:class:`queue.SimpleQueue`): a :class:`threading.Condition` costs several times as much GIL
time per chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from types import TracebackType

__all__ = ["Prefetch"]


class Prefetch:
    """``read(size)`` over the chunks ``produce()`` returns, produced ahead in a thread (an empty
    chunk ends the stream). Use it as a context manager: leaving it stops the thread and waits
    for it, so the stream under ``produce`` may be closed afterwards."""

    def __init__(self, produce: Callable[[], bytes], depth: int) -> None:
        self._produce = produce
        self._depth = depth
        self._items: SimpleQueue[bytes | BaseException] = SimpleQueue()
        self._room: SimpleQueue[bool] = SimpleQueue()  # one token per chunk that may be queued
        self._rest = b""
        self._at = 0  # bytes of _rest already returned
        self._ended = False
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="layer-inflate", daemon=True)

    def start(self) -> None:
        """Start producing (once)."""
        if self._thread.ident is None:
            for _ in range(self._depth):
                self._room.put(True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and wait for it (the stream under ``produce`` is then free)."""
        self._stopped = True
        if self._thread.ident is not None:
            self._room.put(False)  # wakes the thread if it waits for room
            self._thread.join()

    def __enter__(self) -> Prefetch:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while self._room.get() and not self._stopped:
            item: bytes | BaseException
            try:
                item = self._produce()
            except BaseException as exc:  # handed to the reader, raised there
                item = exc
            self._items.put(item)
            if not isinstance(item, bytes) or not item:
                return

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        """:meth:`read` into ``buffer`` (what isal's gzip reader calls)."""
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes of the stream (at most ``size`` when it is not negative), ``b""`` at
        its end; raises what the stream raised."""
        if self._at >= len(self._rest):
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            item = self._items.get()
            self._room.put(True)
            if isinstance(item, BaseException):
                self._error = item
                raise item
            if not item:
                self._ended = True
                return b""
            self._rest, self._at = item, 0
        start = self._at
        if start == 0 and not 0 <= size < len(self._rest):
            self._at = len(self._rest)
            return self._rest  # the whole chunk, not copied
        end = len(self._rest) if size < 0 else min(start + size, len(self._rest))
        self._at = end
        return self._rest[start:end]  # copies only what is returned
