"""Gate latency against the alternative of scanning in CI with Trivy, in the same run.

Starts Debian's distribution registry and `supplychain serve` (SQLite, embedded default), pushes
the real test image (Debian bookworm minbase + old pip/npm packages), and measures:

- push → verdict: from the end of `skopeo copy` to the pipeline verdict in the database;
- gate over HTTP: `POST /v1/gate` for the scanned tag (resolve at the registry + policy on
  stored evidence + record the answer);
- gate CLI: `supplychain gate` as CI runs it (includes Python start-up);
- the role check: the same gate call to a second `serve` of the same database whose gate rule is
  opened (in this benchmark only, by patching the rule table before `serve` starts), calls
  interleaved; and the check alone in process (cached token: one HMAC and a dict look-up);
- Trivy in CI: `trivy image --input <layout>` with a warm cache, what a pipeline without
  supplychain would run before each deploy.

Usage: python bench/gate_bench.py [--runs N]   (prints a Markdown table; medians and p90)
"""

from __future__ import annotations

import argparse
import asyncio
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
from tests.support.tokens import Tokens, issue
from tests.support.trivydb import build_trivy_db

OPEN_GATE = (
    "import sys; import supplychain.access.rules as r; r.RULES[('POST', '/v1/gate')] = r.OPEN; "
    "from supplychain.cli.main import main; sys.exit(main(sys.argv[1:]))"
)
"""`serve` with the gate's rule opened: the benchmark's baseline without the role check."""


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
        tokens = issue(env)
        server = Server(env, root / "server.log", port, tokens=tokens)
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
            checked, skipped = role_check_ab(server, root, env, ref, args.runs)
            results["gate, HTTP POST /v1/gate (ci token, role checked)"] = checked
            results["gate, HTTP POST /v1/gate (bench-only server, rule opened)"] = skipped
            results["role check alone, in process (cached token)"] = check_alone(env, tokens)
            cli = [*SUPPLYCHAIN, "gate", ref, "--server", server.url]
            results["gate, `supplychain gate` CLI"] = timed(
                lambda: subprocess.run(cli, env=tokens.env(env), capture_output=True, check=False),
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
    added = statistics.median(
        results["gate, HTTP POST /v1/gate (ci token, role checked)"]
    ) - statistics.median(results["gate, HTTP POST /v1/gate (bench-only server, rule opened)"])
    print(f"role check added to a gate call (difference of medians): {added * 1000:.2f} ms\n")
    trivy_median = statistics.median(results["Trivy in CI, cold cache: `trivy image`"])
    print("| measurement | runs | median (ms) | p90 (ms) | ratio to Trivy in CI (cold) |")
    print("|---|---|---|---|---|")
    for name, samples in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else median
        ratio = median / trivy_median
        print(f"| {name} | {len(samples)} | {median * 1000:.3f} | {p90 * 1000:.3f} | {ratio:.4f} |")
    shutil.rmtree(root, ignore_errors=True)


def role_check_ab(
    server: Server, root: Path, env: dict[str, str], ref: str, runs: int
) -> tuple[list[float], list[float]]:
    """Gate calls with the role check and to an opened twin of the server, interleaved."""
    port = free_port()
    log = (root / "open.log").open("ab")
    twin = subprocess.Popen(
        [sys.executable, "-c", OPEN_GATE, "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,  # the same settings, one idle worker like the first server
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    checked: list[float] = []
    skipped: list[float] = []
    try:
        wait_for(up, 60, lambda: "opened twin did not start")
        session = requests.Session()
        session.trust_env = False
        headers = server.auth("ci")
        for _ in range(3):  # warm both: token cache, first-use audit entry, connections
            session.post(f"{server.url}/v1/gate", json={"image": ref}, headers=headers, timeout=30)
            session.post(f"{url}/v1/gate", json={"image": ref}, timeout=30)

        def with_check() -> None:
            answer = session.post(
                f"{server.url}/v1/gate", json={"image": ref}, headers=headers, timeout=30
            )
            answer.raise_for_status()

        def without() -> None:
            session.post(f"{url}/v1/gate", json={"image": ref}, timeout=30).raise_for_status()

        for i in range(runs):  # alternate which goes first, so order effects cancel
            first, second = (with_check, without) if i % 2 == 0 else (without, with_check)
            one, two = timed(first, 1), timed(second, 1)
            checked += one if first is with_check else two
            skipped += two if first is with_check else one
    finally:
        twin.terminate()
        twin.wait(timeout=30)
        log.close()
    return checked, skipped


def check_alone(env: dict[str, str], tokens: Tokens, runs: int = 2000) -> list[float]:
    """The app's own role-check dependency on a gate request, token cached, in this process."""
    from starlette.requests import Request

    from supplychain.access.rules import authorizer
    from supplychain.access.tokens import TokenStore
    from supplychain.config import load_settings

    settings = load_settings({k: v for k, v in env.items() if k.startswith("SUPPLYCHAIN_")})
    db = Database(settings.database_url)
    authorize = authorizer(TokenStore(db, settings.token_pepper), None)
    route = type("Route", (), {"path": "/v1/gate"})()
    header = tokens.headers("ci")["Authorization"].encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/gate",
        "headers": [(b"authorization", header)],
        "route": route,
        "client": ("127.0.0.1", 1),
    }

    async def run() -> list[float]:
        await authorize(Request(dict(scope)))  # loads and caches the token, audits first use
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            await authorize(Request(dict(scope)))
            samples.append(time.perf_counter() - start)
        return samples

    try:
        return asyncio.run(run())
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
