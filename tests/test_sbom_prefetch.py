"""The layer's decompressed stream read ahead in a thread (sbom/prefetch.py): the reader sees the
same bytes and the same error, at the same point, and no thread outlives the layer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from sbom.errors import CorruptLayerError
from sbom.prefetch import Prefetch


def chunks(parts: list[bytes], error: Exception | None = None) -> Callable[[], bytes]:
    """``produce`` returning ``parts`` then b"" (or raising ``error`` after them)."""
    items: Iterator[bytes] = iter(parts)

    def produce() -> bytes:
        part = next(items, None)
        if part is not None:
            return part
        if error is not None:
            raise error
        return b""

    return produce


def test_reads_the_same_bytes_in_any_read_size() -> None:
    parts = [bytes([n]) * (n * 7 + 1) for n in range(40)]
    for size in (1, 5, 64, 1 << 20):
        out = []
        with Prefetch(chunks(parts), depth=3) as ahead:
            while piece := ahead.read(size):
                assert len(piece) <= size
                out.append(piece)
            assert ahead.read(size) == b""  # the end stays the end
        assert b"".join(out) == b"".join(parts)


def test_the_streams_error_is_raised_after_the_bytes_before_it() -> None:
    with Prefetch(chunks([b"ab", b"cd"], CorruptLayerError("corrupt gzip")), depth=1) as ahead:
        assert ahead.read() + ahead.read() == b"abcd"
        for _ in range(2):  # and again: never taken for the end of the stream
            with pytest.raises(CorruptLayerError, match="corrupt gzip"):
                ahead.read()


def test_leaving_early_stops_the_thread() -> None:
    before = threading.active_count()
    endless = chunks([b"x" * 1024] * 10_000)
    with pytest.raises(RuntimeError), Prefetch(endless, depth=2) as ahead:
        ahead.read(10)
        raise RuntimeError("the reader failed")
    assert threading.active_count() == before


def test_readinto_fills_the_buffer_as_read_would() -> None:
    parts = [b"abc", b"defgh", b"ij"]
    out = bytearray()
    with Prefetch(chunks(parts), depth=2) as ahead:
        buffer = bytearray(4)
        while count := ahead.readinto(buffer):
            out += buffer[:count]
    assert bytes(out) == b"abcdefghij"
