"""``python -m supplychain.stages.inflate BLOB DIR MAX_BYTES``: one layer blob, decompressed.

Writes the blob's decompressed bytes into ``DIR`` under their SHA-256 and prints
``sha256:<hex> <size>``; exit 1 with the reason on stderr when the blob is corrupt or over
``MAX_BYTES``. A process of its own (:mod:`supplychain.stages.plainlayout` runs one per layer):
``isal`` holds the GIL while it inflates, which in the service's process would stall the SBOM
being made at the same time; here the hashing runs in a second thread (hashlib releases the
GIL), so inflating and hashing overlap. Imports only the layer reader: it starts in ~0.1 s.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sbom.reader import LayerError, decompressed

_CHUNK = 1 << 20


def inflate(source: Path, directory: Path, max_bytes: int) -> tuple[str, int]:
    """Write ``source`` decompressed into ``directory``; its ``sha256:`` digest and size."""
    sha = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(dir=directory, prefix=".plain-")
    try:
        with (
            os.fdopen(handle, "wb") as out,
            decompressed(source, max_bytes) as read,
            ThreadPoolExecutor(1) as hasher,
        ):
            pending = None
            while chunk := read(_CHUNK):
                if pending is not None:
                    pending.result()  # one chunk in flight: memory stays at a few MiB
                pending = hasher.submit(sha.update, chunk)
                out.write(chunk)
                size += len(chunk)
            if pending is not None:
                pending.result()
        digest = sha.hexdigest()
        os.replace(name, directory / digest)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return f"sha256:{digest}", size


def main(argv: list[str]) -> int:
    """Entry point (arguments: BLOB DIR MAX_BYTES)."""
    source, directory, max_bytes = Path(argv[0]), Path(argv[1]), int(argv[2])
    try:
        digest, size = inflate(source, directory, max_bytes)
    except (LayerError, OSError) as exc:
        print(f"{source.name}: {exc}", file=sys.stderr)
        return 1
    print(digest, size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
