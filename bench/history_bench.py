"""History queries on a large PostgreSQL database, through a real `supplychain serve`.

Seeds a new PostgreSQL database with a registry's year: IMAGES images in 50 repositories, each
with a scan (an SBOM, 40 components, 10 findings) and VERDICTS verdicts and gate answers spread
over the year, then asks what an auditor asks, over HTTP with an auditor token:

- one image's history (first page of 100, and every page of 20);
- a repository's history over a month;
- deny verdicts of a week;
- which images held a package at a time (and passed a gate);
- time travel: the answer for a digest at a time.

Usage: python bench/history_bench.py [--images N] [--verdicts N] [--runs N]  (Markdown table,
medians and p90 in ms)
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence import models
from supplychain.evidence.database import Database
from tests.conftest import new_database
from tests.support.service import Server, service_env
from tests.support.tokens import issue

START = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = "sha256:" + "0" * 64


def _digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def seed(url: str, n_images: int, per_image: int) -> list[tuple[int, str, str]]:
    """(image id, digest, repository) of every seeded image."""
    db = Database(url)
    out = []
    minutes = 365 * 24 * 60
    with db.engine.begin() as conn:
        for start in range(0, n_images, 500):
            rows = [
                {"id": i + 1, "host": "r.example", "repository": f"team/app{i % 50}",
                 "digest": _digest("image", i), "media_type": None,
                 "first_seen": START + timedelta(minutes=minutes * i // n_images)}
                for i in range(start, min(n_images, start + 500))
            ]  # fmt: skip
            conn.execute(insert(models.Image), rows)
            conn.execute(
                insert(models.Scan),
                [{"id": r["id"], "image_id": r["id"], "started_at": r["first_seen"],
                  "finished_at": r["first_seen"] + timedelta(seconds=30), "stage_seconds": {},
                  "sbom_warnings": [], "scanner": "trivy", "scanner_version": "0.76.0",
                  "db_digest": POLICY, "sbom_digest": _digest("sbom", r["id"]),
                  "sbom_format": "cyclonedx-json"} for r in rows],
            )  # fmt: skip
            conn.execute(
                insert(models.Component),
                [{"scan_id": r["id"], "image_id": r["id"], "type": "pypi",
                  "name": f"pkg{k}", "version": f"1.{(r['id'] + k) % 30}.0",
                  "purl": f"pkg:pypi/pkg{k}@1.{(r['id'] + k) % 30}.0"}
                 for r in rows for k in range(40)],
            )  # fmt: skip
            conn.execute(
                insert(models.Finding),
                [{"scan_id": r["id"], "image_id": r["id"], "vuln_id": f"CVE-2026-{k:04d}",
                  "package": f"pkg{k}", "installed": "1.0", "severity": "HIGH",
                  "aliases": [f"GHSA-{k:04d}"]} for r in rows for k in range(10)],
            )  # fmt: skip
            verdicts = []
            for r in rows:
                for v in range(per_image):
                    when = r["first_seen"] + timedelta(minutes=31 + v * 97)
                    verdicts.append(
                        {"image_id": r["id"], "scan_id": r["id"],
                         "context": "gate" if v % 2 else "pipeline", "digest": r["digest"],
                         "decision": "deny" if v % 3 == 0 else "allow", "reasons": ["x"],
                         "policy": "default", "policy_digest": POLICY, "evaluated_at": when}
                    )  # fmt: skip
            conn.execute(insert(models.Verdict), verdicts)
            out += [(r["id"], r["digest"], f"r.example/{r['repository']}") for r in rows]
    db.dispose()
    return out


def timed(runs: int, call: Any) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images to seed")
    parser.add_argument("--verdicts", type=int, default=40, help="verdicts per image")
    parser.add_argument("--runs", type=int, default=30, help="calls per question")
    args = parser.parse_args()
    with new_database() as url, tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        seeded = seed(url, args.images, args.verdicts)
        print(f"seeded {args.images} images, {args.images * args.verdicts} verdicts, "
              f"{args.images * 40} components in {time.perf_counter() - began:.0f} s",
              file=sys.stderr)  # fmt: skip
        env = service_env(
            {"SUPPLYCHAIN_DATA_DIR": tmp, "SUPPLYCHAIN_DATABASE_URL": url,
             "SUPPLYCHAIN_WORKERS": "0", "SUPPLYCHAIN_TRIVY_OFFLINE": "true"}
        )  # fmt: skip
        tokens = issue(env)
        server = Server(env, Path(tmp) / "server.log", tokens=tokens)
        try:
            server.wait_ready()
            session = requests.Session()
            session.headers.update(tokens.headers("auditor"))
            _id, digest, repo = seeded[len(seeded) // 3]  # first seen before mid-year

            def get(path: str, **params: Any) -> dict[str, Any]:
                answer = session.get(server.url + path, params=params, timeout=60)
                assert answer.status_code == 200, answer.text
                data: dict[str, Any] = answer.json()
                return data

            def every_page() -> None:
                cursor = None
                while True:
                    page = get(f"/v1/history/images/{digest}", limit=20,
                               **({"cursor": cursor} if cursor else {}))  # fmt: skip
                    cursor = page["next_cursor"]
                    if not cursor:
                        return

            mid = START + timedelta(days=180)
            questions = [
                ("image history, first page (100)", lambda: get(f"/v1/history/images/{digest}")),
                ("image history, every page of 20", every_page),
                ("repository, one month, first page", lambda: get(
                    "/v1/history/repositories", repository=repo, since=mid.isoformat(),
                    until=(mid + timedelta(days=30)).isoformat())),
                ("deny verdicts of a week, first page", lambda: get(
                    "/v1/history/verdicts", decision="deny", since=mid.isoformat(),
                    until=(mid + timedelta(days=7)).isoformat())),
                ("affected: package at a time, first page", lambda: get(
                    "/v1/history/affected", at=mid.isoformat(), purl="pkg:pypi/pkg7",
                    versions="<1.3")),
                ("affected: advisory at a time, first page", lambda: get(
                    "/v1/history/affected", at=mid.isoformat(), cve="GHSA-0003")),
                ("time travel: answer for a digest at T", lambda: get(
                    "/v1/history/decision", digest=digest, at=mid.isoformat())),
            ]  # fmt: skip
            print(f"| question ({args.images} images, {args.images * args.verdicts} verdicts, "
                  "PostgreSQL, `serve` over HTTP) | median ms | p90 ms |")  # fmt: skip
            print("|---|---|---|")
            for name, call in questions:
                call()  # warm
                median, p90 = timed(args.runs, call)
                print(f"| {name} | {median:.1f} | {p90:.1f} |")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
