"""Gate latency against the alternative of scanning in CI with Trivy, in the same run.

Starts Debian's distribution registry and `supplychain serve` (SQLite, embedded default), pushes
the real test image (Debian bookworm minbase + old pip/npm packages), and measures:

- push → verdict: from the end of `skopeo copy` to the pipeline verdict in the database;
- gate over HTTP: `POST /v1/gate` for the scanned tag (resolve at the registry + policy on
  stored evidence + record the answer);
- gate CLI: `supplychain gate` as CI runs it (includes Python start-up);
- Trivy in CI: `trivy image --input <layout>` with a warm cache, what a pipeline without
  supplychain would run before each deploy.

Usage: python bench/gate_bench.py [--runs N]   (prints a Markdown table; medians)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence.database import Database
from supplychain.evidence.models import Verdict
from tests.conftest import TOKEN
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import SUPPLYCHAIN, Server, service_env, wait_for
from tests.support.trivydb import build_trivy_db


def timed(call: object, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    layout = images.app_layout()
    root = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    trivy_dir = root / "data" / "trivy"
    build_trivy_db(trivy_dir, [URLLIB3_HIGH])
    port = free_port()
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution", {"Authorization": [f"Bearer {TOKEN}"]}
    )
    results: dict[str, list[float]] = {}
    with Registry(root / "registry", notifications=[hook]) as registry:
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(root / "data"),
                "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_WORKERS": "1",
            }
        )
        server = Server(env, root / "server.log", port)
        db = Database(f"sqlite:///{root / 'data' / 'supplychain.db'}")
        try:
            server.wait_ready()
            push_to_verdict = []
            for i in range(3):
                digest = images.push(
                    layout, "app" if i == 0 else "base", f"{registry.host}/bench/r{i}:v1"
                )
                start = time.perf_counter()

                def decided(digest: str = digest) -> bool:
                    with db.session() as session:
                        query = select(Verdict.id).where(
                            Verdict.digest == digest, Verdict.context == "pipeline"
                        )
                        return session.scalar(query) is not None

                wait_for(decided, 300, lambda: server.log()[-2000:])
                push_to_verdict.append(time.perf_counter() - start)
            results["push → verdict (pipeline)"] = push_to_verdict
            ref = f"{registry.host}/bench/r0:v1"
            results["gate, HTTP POST /v1/gate"] = timed(
                lambda: requests.post(
                    f"{server.url}/v1/gate", json={"image": ref}, timeout=30
                ).raise_for_status(),
                args.runs,
            )
            cli = [*SUPPLYCHAIN, "gate", ref, "--server", server.url]
            results["gate, `supplychain gate` CLI"] = timed(
                lambda: subprocess.run(cli, env=env, capture_output=True, check=False),
                max(5, args.runs // 4),
            )
            trivy = shutil.which("trivy") or "trivy"
            offline = ["--quiet", "--skip-db-update", "--skip-java-db-update", "--offline-scan"]
            scan = [trivy, "image", "--input", f"{layout}:app", *offline, "--format", "json"]
            cold = trivy_dir.parent / "cold"

            def cold_scan() -> None:  # a fresh CI runner: the DB only, no layer cache
                shutil.rmtree(cold, ignore_errors=True)
                shutil.copytree(trivy_dir / "db", cold / "db")
                subprocess.run([*scan, "--cache-dir", str(cold)], capture_output=True, check=True)

            def warm_scan() -> None:
                subprocess.run([*scan, "--cache-dir", str(cold)], capture_output=True, check=True)

            runs = max(5, args.runs // 4)
            results["Trivy in CI, cold cache: `trivy image`"] = timed(cold_scan, runs)
            results["Trivy in CI, warm cache: `trivy image`"] = timed(warm_scan, runs)
        finally:
            server.stop()
            db.dispose()
    trivy_median = statistics.median(results["Trivy in CI, cold cache: `trivy image`"])
    print("| measurement | runs | median (s) | ratio to Trivy in CI (cold) |")
    print("|---|---|---|---|")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"| {name} | {len(samples)} | {median:.3f} | {median / trivy_median:.2f} |")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
