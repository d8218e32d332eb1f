"""The header blobs of an rpm database, in its three on-disk formats, read from a file object.

* **SQLite** (``rpmdb.sqlite``, rpm >= 4.16): the ``Packages`` table's ``blob`` column. SQLite
  needs a file: the database is copied to a temporary file in chunks (never whole in memory)
  and opened read-only; a WAL-mode header (as rpm leaves it) is switched to rollback mode in
  the copy, since there is no ``-wal`` file in an image.
* **Berkeley DB hash** (``Packages``, rpm < 4.16: CentOS/RHEL <= 8, Amazon Linux 2): page 0 is
  the hash meta page (magic ``0x061561``, either byte order; page size; last page number);
  every hash page (type 13, or 2 for the unsorted pages of old databases) holds key/data item
  pairs addressed by a 16-bit offset index after the 26-byte page header; a data item is either
  inline (``H_KEYDATA``) or an ``H_OFFPAGE`` reference (page number, total length) to a chain
  of overflow pages (type 7) whose header's free-offset field is the length of the data on that
  page. Each value is one rpm header; the 4-byte value under key 0 is rpm's instance counter.
* **ndb** (``Packages.db``, SUSE): a 32-byte header (``RpmP``, version 0, generation, number of
  4 KiB slot pages), then 16-byte slots (``Slot``, package index, block offset, block count);
  a used slot points (in 16-byte blocks) at a blob header (``BlbS``, package index, checksum,
  length) followed by the header blob.

Python has no reader for the last two formats (``bsddb3`` needs the C library and writes
lock files), so they are read here, page by page or blob by blob: memory stays bounded by the
page size and the largest header, whatever the size of the database. Every offset, count and
length is checked against the file and hard limits; a loop in an overflow chain ends it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["RpmDbError", "header_blobs"]

SQLITE_MAGIC = b"SQLite format 3\0"
_BDB_MAGIC = 0x061561
_NDB_MAGIC = b"RpmP"
_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))  # 512 … 64 KiB
_HASH_PAGES = (2, 13)
_OVERFLOW_PAGE = 7
_META_PAGE = 8
_H_KEYDATA, _H_OFFPAGE = 1, 3
_PAGE_HEADER = 26
_CHECKSUM = 20  # the page's checksum area when the meta page says the file has them
MAX_HEADER = 64 * 1024 * 1024
"""No rpm header is bigger (rpm's own limit is 256 MiB of data, real ones are < 1 MiB)."""
_NDB_SLOT_PAGES = 2048
_COPY_CHUNK = 1 << 20


class RpmDbError(ValueError):
    """The file is not an rpm database in a format read here, or is corrupt beyond reading."""


def header_blobs(handle: BinaryIO) -> Iterator[bytes]:
    """Every package header blob in the database ``handle`` (seekable), format sniffed."""
    handle.seek(0)
    head = handle.read(512)
    if head.startswith(SQLITE_MAGIC):
        yield from _sqlite(handle)
    elif head.startswith(_NDB_MAGIC):
        yield from _ndb(handle, head)
    elif len(head) >= 72 and _BDB_MAGIC in (
        struct.unpack_from("<I", head, 12)[0],
        struct.unpack_from(">I", head, 12)[0],
    ):
        yield from _bdb(handle, head)
    else:
        raise RpmDbError("not an rpm database (neither SQLite, Berkeley DB hash nor ndb)")


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite(handle: BinaryIO) -> Iterator[bytes]:
    fd, name = tempfile.mkstemp(prefix="rpmdb-", suffix=".sqlite")
    try:
        with os.fdopen(fd, "wb") as out:
            handle.seek(0)
            first = bytearray(handle.read(_COPY_CHUNK))
            if first[18:20] == b"\2\2":
                first[18:20] = b"\1\1"  # WAL → rollback journal: no -wal file in an image
            out.write(first)
            shutil.copyfileobj(handle, out, _COPY_CHUNK)
        conn = sqlite3.connect(f"file:{name}?mode=ro&immutable=1", uri=True)
        try:
            for (blob,) in conn.execute("SELECT blob FROM Packages"):
                if isinstance(blob, bytes):
                    yield blob
        except sqlite3.DatabaseError as exc:
            raise RpmDbError(f"unreadable SQLite rpmdb: {exc}") from None
        finally:
            conn.close()
    finally:
        os.unlink(name)


# --- ndb -------------------------------------------------------------------------------------


def _ndb(handle: BinaryIO, head: bytes) -> Iterator[bytes]:
    if len(head) < 32:
        raise RpmDbError("truncated ndb header")
    version, _generation, slot_pages = struct.unpack_from("<III", head, 4)
    if version != 0 or not 0 < slot_pages <= _NDB_SLOT_PAGES:
        raise RpmDbError(f"unsupported ndb (version {version}, {slot_pages} slot pages)")
    handle.seek(32)
    slots = handle.read(slot_pages * 4096 - 32)
    if len(slots) != slot_pages * 4096 - 32:
        raise RpmDbError("truncated ndb slot pages")
    for offset in range(0, len(slots), 16):
        magic, index, block, _count = struct.unpack_from("<4sIII", slots, offset)
        if magic != b"Slot":
            raise RpmDbError(f"bad ndb slot at {32 + offset}")
        if index == 0:
            continue  # a free slot
        handle.seek(block * 16)
        blob_header = handle.read(16)
        if len(blob_header) < 16:
            raise RpmDbError(f"ndb blob of package {index} is past the end of the file")
        blob_magic, blob_index, _checksum, length = struct.unpack("<4sIII", blob_header)
        if blob_magic != b"BlbS" or blob_index != index or length > MAX_HEADER:
            raise RpmDbError(f"bad ndb blob header for package {index}")
        blob = handle.read(length)
        if len(blob) != length:
            raise RpmDbError(f"truncated ndb blob of package {index}")
        yield blob


# --- Berkeley DB hash ------------------------------------------------------------------------


class _Bdb:
    def __init__(self, handle: BinaryIO, meta: bytes) -> None:
        little = struct.unpack_from("<I", meta, 12)[0] == _BDB_MAGIC
        self.order = "<" if little else ">"
        self.handle = handle
        self.page_size, encryption, page_type, flags = struct.unpack_from(
            self.order + "IBBB", meta, 20
        )
        self.last_page = struct.unpack_from(self.order + "I", meta, 32)[0]
        if self.page_size not in _PAGE_SIZES:
            raise RpmDbError(f"unexpected Berkeley DB page size {self.page_size}")
        if page_type != _META_PAGE:
            raise RpmDbError("not a Berkeley DB hash database")
        if encryption:
            raise RpmDbError("encrypted Berkeley DB")
        self.data_start = _PAGE_HEADER + (_CHECKSUM if flags & 1 else 0)

    def page(self, number: int) -> bytes:
        self.handle.seek(number * self.page_size)
        data = self.handle.read(self.page_size)
        if len(data) != self.page_size:
            raise RpmDbError(f"Berkeley DB page {number} is past the end of the file")
        return data

    def header(self, page: bytes) -> tuple[int, int, int, int]:
        """(next page, number of entries, free-area offset, page type)."""
        next_page, entries, free, _level, kind = struct.unpack_from(self.order + "IHHBB", page, 16)
        return next_page, entries, free, kind

    def overflow(self, first: int, length: int) -> bytes:
        if length > MAX_HEADER:
            raise RpmDbError(f"a {length}-byte value is over the limit")
        parts: list[bytes] = []
        have, number, seen = 0, first, set()
        while number and have < length:
            if number in seen or number > self.last_page:
                raise RpmDbError(f"broken overflow chain at page {number}")
            seen.add(number)
            page = self.page(number)
            next_page, _entries, used, kind = self.header(page)
            if kind != _OVERFLOW_PAGE:
                raise RpmDbError(f"page {number} is not an overflow page")
            chunk = page[self.data_start : self.data_start + used]
            parts.append(chunk)
            have += len(chunk)
            number = next_page
        value = b"".join(parts)
        if len(value) < length:
            raise RpmDbError("truncated overflow chain")
        return value[:length]

    def values(self) -> Iterator[bytes]:
        for number in range(1, self.last_page + 1):
            page = self.page(number)
            _next, entries, _free, kind = self.header(page)
            if kind not in _HASH_PAGES:
                continue
            index_end = self.data_start + 2 * entries
            if entries % 2 or index_end > self.page_size:
                raise RpmDbError(f"corrupt hash page {number}")
            offsets = struct.unpack_from(f"{self.order}{entries}H", page, self.data_start)
            for item in range(1, entries, 2):  # (key, data) pairs: the data items
                start = offsets[item]
                end = offsets[item - 1]  # items are laid out downwards from the page end
                if not index_end <= start < end <= self.page_size:
                    raise RpmDbError(f"corrupt item offsets on hash page {number}")
                if page[start] == _H_OFFPAGE and end - start >= 12:
                    first, length = struct.unpack_from(self.order + "II", page, start + 4)
                    yield self.overflow(first, length)
                elif page[start] == _H_KEYDATA and end - start > 17:
                    yield page[start + 1 : end]  # small headers fit on the page


def _bdb(handle: BinaryIO, head: bytes) -> Iterator[bytes]:
    yield from _Bdb(handle, head).values()
