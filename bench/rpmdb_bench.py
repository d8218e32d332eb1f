"""Peak memory and time on an image whose rpm database is ~100 MB, ours against Trivy.

The database is made from the CBL-Mariner headers of tests/fixtures/rpmdb, repeated under new
header numbers until it reaches ``--mb``: as a Berkeley DB ``Packages`` (by Berkeley DB's own
``db_load``, as in the tests) and as an ``rpmdb.sqlite`` (by SQLite), each in a one-layer image
(umoci). Each run is a fresh process with a cold cache; medians are reported.

    python3 bench/rpmdb_bench.py [--runs 3] [--mb 100]

Goal: ours stays within 300 MiB peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sbom_bench import measure, ours, trivy  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/rpmdb/cbl-mariner-2.0/rpmdb.sqlite"
OS_RELEASE = b'NAME="Common Base Linux Mariner"\nID=mariner\nVERSION_ID="2.0"\n'


def blobs(megabytes: int) -> list[bytes]:
    rows = [bytes(b) for (b,) in sqlite3.connect(FIXTURE).execute("SELECT blob FROM Packages")]
    size = sum(map(len, rows))
    return rows * max(1, megabytes * 1_000_000 // size)


def berkeley_db(headers: list[bytes], out: Path) -> None:
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=4096", "HEADER=END"]
    for number, blob in enumerate(headers, 1):
        lines += [" " + number.to_bytes(4, "little").hex(), " " + blob.hex()]
    lines.append("DATA=END")
    subprocess.run(["db_load", str(out)], input="\n".join(lines) + "\n", text=True, check=True)


def sqlite_db(headers: list[bytes], out: Path) -> None:
    with sqlite3.connect(out) as conn:
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)")
        conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in headers])
    conn.close()


def make(work: Path, megabytes: int) -> None:
    """Build both images under ``work`` (run in a child: a process's peak RSS is inherited by
    the processes it forks, so the measuring process must stay small)."""
    from tests.support.images import files_layout
    from tests.support.trivydb import build_trivy_db

    headers = blobs(megabytes)
    build_trivy_db(work / "trivy", [])
    for kind, path, maker in (
        ("bdb", "var/lib/rpm/Packages", berkeley_db),
        ("sqlite", "var/lib/rpm/rpmdb.sqlite", sqlite_db),
    ):
        db = work / f"{kind}.db"
        maker(headers, db)
        files = {"etc/os-release": OS_RELEASE, path: db.read_bytes()}
        files_layout(work / f"oci-{kind}", "rpm", [files])
        (work / f"{kind}.txt").write_text(f"{len(headers)} {db.stat().st_size}")
        db.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make(args.make, args.mb)
        return
    with tempfile.TemporaryDirectory(prefix="rpmdb-bench-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, __file__, "--make", tmp, "--mb", str(args.mb)], check=True)
        trivy_cache = work / "trivy"
        print(f"{args.runs} runs (medians), fresh process and cold cache each")
        print(
            "| database | packages | size | ours: wall | ours: peak RSS | trivy: wall | trivy: ",
            end="",
        )
        print("peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for kind, label in (("bdb", "Berkeley DB"), ("sqlite", "SQLite")):
            layout = work / f"oci-{kind}"
            count, size = (work / f"{kind}.txt").read_text().split()
            mine, theirs = [], []
            for _ in range(args.runs):
                shutil.rmtree(work / "cache", ignore_errors=True)
                mine.append(measure(ours(layout, "rpm", work / "cache", work / "o.json")))
                shutil.rmtree(trivy_cache / "fanal", ignore_errors=True)
                theirs.append(measure(trivy(layout, "rpm", trivy_cache, work / "t.json")))
            cells = [
                f"{statistics.median(w for w, _ in rows):.2f} s | "
                f"{statistics.median(m for _, m in rows) / 1024:.0f} MiB"
                for rows in (mine, theirs)
            ]
            print(f"| {label} | {count} | {int(size) / 2**20:.0f} MiB | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
