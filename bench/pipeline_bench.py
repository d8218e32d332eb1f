"""Gate latency against the alternative of scanning in CI with Trivy, in the same run.

Starts Debian's distribution registry and `supplychain serve` (SQLite, embedded default), pushes
the real test image (Debian bookworm minbase + old pip/npm packages), and measures:

- push → verdict: from the end of `skopeo copy` (the registry notifies `supplychain serve`) to
  the pipeline verdict in the database, each run on a fresh service (new data dir: no blob, SBOM
  or layer cache), paired with a cold `trivy image --scanners vuln,secret` (a new CI runner: the
  DB only) on the same image; the findings of both are compared;
- gate over HTTP: `POST /v1/gate` for the scanned tag (resolve at the registry + policy on
  stored evidence + record the answer);
- gate CLI: `supplychain gate` as CI runs it (includes Python start-up);
- Trivy in CI: `trivy image --input <layout> --scanners vuln,secret`, cold (as above) and with a
  warm cache, what a pipeline without supplychain would run before each deploy.

Usage: python bench/pipeline_bench.py [--runs N] [--pushes N]   (prints Markdown tables; medians)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence.database import Database
from supplychain.evidence.models import Finding, Image, Scan, Verdict
from supplychain.stages.scanner import _go_env
from tests.conftest import TOKEN
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import SUPPLYCHAIN, Server, service_env
from tests.support.tokens import Tokens, issue
from tests.support.trivydb import build_trivy_db

BLOB = "application/octet-stream"  # the media type distribution gives blob events


def timed(call: object, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def until(check: Callable[[], bool], timeout: float, server: Server) -> None:
    """Poll ``check`` every 10 ms (the test helper's 0.25 s would blur the measurement)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(server.log()[-2000:])
        time.sleep(0.01)


def start(
    root: Path, registry: Registry, port: int
) -> tuple[Server, Database, dict[str, str], Tokens]:
    """``supplychain serve`` on a fresh data dir (SQLite, one worker) with the test DB."""
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(root / "trivy", data / "trivy")
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(data),
            "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
            "SUPPLYCHAIN_REGISTRIES": registry.host,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_WORKERS": "1",
        }
    )
    tokens = issue(env)  # one per role, made before serve starts (as a new install does)
    server = Server(env, root / "server.log", port, tokens=tokens)
    server.wait_ready()
    return server, Database(f"sqlite:///{data / 'supplychain.db'}"), env, tokens


def trivy_findings(report: bytes) -> set[tuple[str, str, str]]:
    """(id, package or file, installed version or rule) of every vulnerability and secret."""
    found = set()
    for result in json.loads(report).get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            found.add((v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"]))
        for secret in result.get("Secrets") or []:
            found.add((f"secret:{secret['RuleID']}", result["Target"], "secret"))
    return found


def stored_findings(db: Database, digest: str) -> set[tuple[str, str, str]]:
    with db.session() as session:
        rows = session.execute(
            select(Finding.vuln_id, Finding.package, Finding.installed, Finding.kind)
            .join(Image, Image.id == Finding.image_id)
            .where(Image.digest == digest)
        )
        return {(v, p, "secret" if k == "secret" else i) for v, p, i, k in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=5, help="paired push → verdict runs")
    parser.add_argument(
        "--notify-all",
        action="store_true",
        help="the registry notifies every event (pulls and blob uploads too), not as recommended",
    )
    args = parser.parse_args()
    layout = images.app_layout()
    root = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    trivy_dir = root / "trivy"
    build_trivy_db(trivy_dir, [URLLIB3_HIGH])
    port = free_port()
    # the registry's notifications as docs/webhooks.md recommends: manifest pushes and deletes
    # only (the service's own pulls and blob uploads would otherwise notify it too)
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution",
        {"Authorization": [f"Bearer {TOKEN}"]},
        ignore_actions=() if args.notify_all else ("pull",),
        ignore_media_types=() if args.notify_all else (BLOB,),
    )
    results: dict[str, list[float]] = {}
    trivy = shutil.which("trivy") or "trivy"
    offline = ["--quiet", "--skip-db-update", "--skip-java-db-update", "--offline-scan"]
    scan = [trivy, "image", "--input", f"{layout}:app", *offline, "--format", "json"]
    scan += ["--scanners", "vuln,secret", "--skip-version-check", "--disable-telemetry"]
    cold = root / "cold"

    def cold_scan(env: dict[str, str] | None = None) -> bytes:  # a fresh CI runner: DB only
        shutil.rmtree(cold, ignore_errors=True)
        shutil.copytree(trivy_dir / "db", cold / "db")
        return subprocess.run(
            [*scan, "--cache-dir", str(cold)], capture_output=True, check=True, env=env
        ).stdout

    with Registry(root / "registry", notifications=[hook]) as registry:
        push_to_verdict, trivy_cold, ratios, stages = [], [], [], []
        for i in range(args.pushes):
            server, db, env, tokens = start(root, registry, port)
            try:
                digest = images.push(layout, "app", f"{registry.host}/bench/r{i}:v1")
                begin = time.perf_counter()

                def decided(digest: str = digest, db: Database = db) -> bool:
                    with db.session() as session:
                        query = select(Verdict.id).where(
                            Verdict.digest == digest, Verdict.context == "pipeline"
                        )
                        return session.scalar(query) is not None

                until(decided, 300, server)
                push_to_verdict.append(time.perf_counter() - begin)
                ours = stored_findings(db, digest)
                with db.session() as session:
                    stages.append(session.scalars(select(Scan.stage_seconds)).one())
            finally:
                server.stop()
                db.dispose()
            begin = time.perf_counter()
            report = cold_scan()
            trivy_cold.append(time.perf_counter() - begin)
            ratios.append(push_to_verdict[-1] / trivy_cold[-1])
            theirs = trivy_findings(report)
            if ours != theirs:
                raise SystemExit(f"findings differ: ours-only {ours - theirs}, trivy-only "
                                 f"{theirs - ours}")  # fmt: skip
        results["push → verdict (pipeline, fresh service)"] = push_to_verdict
        results["Trivy in CI, cold cache: `trivy image --scanners vuln,secret`"] = trivy_cold
        # for reference, not the goal's comparison: CI's Trivy with the Go GC settings the
        # service gives its own Trivy (supplychain.stages.scanner._go_env)
        tuned = _go_env({k: v for k, v in os.environ.items() if k not in ("GOGC", "GOMEMLIMIT")})
        results["Trivy in CI, cold, with the service's Go GC settings (reference)"] = timed(
            lambda: cold_scan(tuned), args.pushes
        )
        print(f"paired ratios push → verdict / cold trivy: {[round(r, 2) for r in ratios]}, "
              f"median {statistics.median(ratios):.2f}; findings equal ({len(theirs)}); "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print("stage seconds (median):", {
            k: round(statistics.median(float(s.get(k, 0)) for s in stages), 3)
            for k in stages[0]
        })  # fmt: skip
        server, db, env, tokens = start(root, registry, port)
        try:
            digest = images.push(layout, "app", f"{registry.host}/bench/r0:v1")
            until(lambda: bool(stored_findings(db, digest)), 300, server)
            ref = f"{registry.host}/bench/r0:v1"
            results["gate, HTTP POST /v1/gate"] = timed(
                lambda: requests.post(
                    f"{server.url}/v1/gate",
                    json={"image": ref},
                    headers=tokens.headers("ci"),
                    timeout=30,
                ).raise_for_status(),
                args.runs,
            )
            cli = [*SUPPLYCHAIN, "gate", ref, "--server", server.url]
            results["gate, `supplychain gate` CLI"] = timed(
                lambda: subprocess.run(cli, env=tokens.env(env), capture_output=True, check=False),
                max(5, args.runs // 4),
            )

            def warm_scan() -> None:
                subprocess.run([*scan, "--cache-dir", str(cold)], capture_output=True, check=True)

            runs = max(5, args.runs // 4)
            results["Trivy in CI, warm cache: `trivy image`"] = timed(warm_scan, runs)
        finally:
            server.stop()
            db.dispose()
    trivy_median = statistics.median(
        results["Trivy in CI, cold cache: `trivy image --scanners vuln,secret`"]
    )
    print("| measurement | runs | median (s) | ratio to Trivy in CI (cold) |")
    print("|---|---|---|---|")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"| {name} | {len(samples)} | {median:.3f} | {median / trivy_median:.2f} |")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
