"""A reconcile pass over a registry with many tags: `supplychain reconcile`, as users run it.

Run: ``python3 bench/reconcile_bench.py --repositories 10 --tags 100``. A real distribution
registry on loopback gets one small image pushed once and then one manifest per tag (each with its
own annotation, so each tag has its own digest), spread over the repositories. ``supplychain
reconcile`` (a subprocess, ``SUPPLYCHAIN_RECONCILE_RATE=0``, pages of 100) runs twice on
PostgreSQL and on SQLite: the first pass queues every digest, the second finds them all known and
queues nothing. Reports wall seconds and tags per second of each pass (process start included).
There is no Trivy counterpart; the figure to compare is the registry's own rate limit (requests a
second a pass is allowed), which a pass must not be the bottleneck under.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import new_database
from tests.support import images
from tests.support.registry import Registry
from tests.support.service import run_cli, service_env

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def fill(registry: Registry, root: Path, repositories: int, tags: int) -> int:
    layout = images.tiny_layout()
    images.push(layout, "tiny", f"{registry.host}/bench/r0:base")
    manifest = images.manifest(layout, "tiny")
    count = 0
    for r in range(repositories):
        repository = f"bench/r{r}"
        if r:
            images.push(layout, "tiny", f"{registry.host}/{repository}:base")
        for t in range(tags):
            document = {**manifest, "annotations": {"bench": f"{r}-{t}"}}
            registry.put_manifest(repository, f"t{t}", document, OCI_MANIFEST)
            count += 1
    return count + repositories  # and each repository's "base" tag


def one_pass(env: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    done = run_cli(["reconcile", "--output", "json"], env, timeout=3600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"reconcile failed: {done.stderr[-2000:]}")
    report: dict[str, object] = json.loads(done.stdout)
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repositories", type=int, default=10)
    parser.add_argument("--tags", type=int, default=100, help="tags per repository")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "registry") as registry:
        tags = fill(registry, Path(tmp), args.repositories, args.tags)
        for name in ("PostgreSQL", "SQLite"):
            with new_database() as pg_url:
                url = pg_url if name == "PostgreSQL" else f"sqlite:///{tmp}/{time.time_ns()}.db"
                env = service_env(
                    {
                        "SUPPLYCHAIN_DATA_DIR": str(Path(tmp) / f"data-{name}"),
                        "SUPPLYCHAIN_DATABASE_URL": url,
                        "SUPPLYCHAIN_REGISTRIES": registry.host,
                        "SUPPLYCHAIN_RECONCILE_RATE": "0",
                        "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                    }
                )
                for label in ("first", "second"):
                    seconds, report = one_pass(env)
                    queued = len(report["queued"])  # type: ignore[arg-type]
                    rows.append((name, label, tags, queued, seconds))
    print("| database | pass | tags | queued | seconds | tags/s |")
    print("|---|---|---|---|---|---|")
    for name, label, count, queued, seconds in rows:
        print(f"| {name} | {label} | {count} | {queued} | {seconds:.1f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    main()
