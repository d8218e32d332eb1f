"""Webhook intake throughput: `wrk` against `supplychain serve --workers 0`, as a registry calls it.

Each request is one distribution notification envelope holding one manifest push with a unique
digest and event id (a wrk Lua script), sent to ``POST /v1/hooks/distribution`` with the source's
bearer token over 16 connections. After each run the jobs in the database are counted: every 2xx
answer must have become a job (``lost`` = 2xx answers - jobs; it must be 0, since the intake
answers only after its commit). Each run gets a fresh database (PostgreSQL: a new database on the
local server; SQLite: a new file) and a fresh `serve`.

Usage: python bench/intake_bench.py [--db sqlite,postgresql] [--runs 3] [--seconds 10]
           [--connections 16] [--processes N]
Prints a Markdown table: medians over the runs of events/s, p50 and p99 latency, lost, and serve's
CPU per event: all its threads, and its event loops alone (HTTP, adapters, answers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import requests
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job
from tests.conftest import PG_SERVER, TOKEN
from tests.support.registry import free_port
from tests.support.service import Process, service_env, wait_for

REGISTRY = "registry.bench.example:5000"
"""Allowlisted, never contacted: every event carries its digest."""

WRK_SCRIPT = r"""
local counter = 0
thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
end

request = function()
  counter = counter + 1
  local hex = string.format("%08x", thread_id) .. string.rep("0", 40) ..
    string.format("%016x", counter)
  local digest = "sha256:" .. hex
  local body = '{"events":[{"id":"' .. hex .. '","timestamp":"2026-11-30T00:00:00Z",' ..
    '"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",' ..
    '"digest":"' .. digest .. '","repository":"bench/app","tag":"v' .. counter .. '"},' ..
    '"request":{"host":"REGISTRY"},"actor":{"name":"bench"}}]}'
  return wrk.format("POST", "/v1/hooks/distribution", {
    ["Authorization"] = "Bearer TOKEN",
    ["Content-Type"] = "application/vnd.docker.distribution.events.v1+json",
  }, body)
end

response = function(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end

done = function(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("bad")
  end
  io.write(string.format(
    'RESULT {"requests": %d, "ok": %d, "bad": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f}\n',
    summary.requests, ok_total, bad_total, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _new_pg_database() -> str:
    name = f"sc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    return url


def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _jobs(url: str) -> int:
    db = Database(url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)
    finally:
        db.dispose()


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU so far of ``pid`` and its live descendants (serve's HTTP processes):
    all their threads, and their main threads only (the event loops: HTTP, adapters, answers;
    not the intake's committer threads)."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        own, main = used(Path(f"/proc/{pid}/stat")), used(Path(f"/proc/{pid}/task/{pid}/stat"))
    except OSError:
        return 0.0, 0.0
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for child in children:
        total, loop = _cpu_seconds(int(child))
        own, main = own + total, main + loop
    return own, main


def one_run(kind: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """One fresh database and `serve`, one wrk run; its figures."""
    url = _new_pg_database() if kind == "postgresql" else f"sqlite:///{work / 'bench.db'}"
    port = free_port()
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(work / "data"),
            "SUPPLYCHAIN_DATABASE_URL": url,
            "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
            "SUPPLYCHAIN_REGISTRIES": REGISTRY,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_INTAKE_BATCH_MS": str(args.batch_ms),
            "SUPPLYCHAIN_INTAKE_COMMITTERS": str(args.committers),
        }
    )
    if kind == "sqlite":
        Database(url).upgrade()
    command = ["serve", "--listen", f"127.0.0.1:{port}", "--workers", "0"]
    command += ["--log-level", args.log_level]
    if args.processes > 1:
        command += ["--processes", str(args.processes)]
    server = Process(command, env, work / f"serve-{port}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), 60, lambda: server.log()[-2000:])
        cpu_before = _cpu_seconds(server.proc.pid)
        script = work / "intake.lua"
        script.write_text(WRK_SCRIPT.replace("REGISTRY", REGISTRY).replace("TOKEN", TOKEN))
        out = subprocess.run(
            [
                "wrk",
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"{base}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu_after = _cpu_seconds(server.proc.pid)
    finally:
        server.stop()
    try:
        match = re.search(r"^RESULT (\{.*\})$", out, re.MULTILINE)
        if match is None:
            raise SystemExit(f"wrk printed no result:\n{out}")
        result = json.loads(match.group(1))
        jobs = _jobs(url)
    finally:
        if kind == "postgresql":
            _drop_pg_database(url)
    return {
        "rate": result["ok"] / result["seconds"],
        "p50": result["p50_ms"],
        "p99": result["p99_ms"],
        "ok": result["ok"],
        "bad": result["bad"],
        "lost": max(0, result["ok"] - jobs),
        "cpu_ms": (cpu_after[0] - cpu_before[0]) * 1000 / max(1, result["ok"]),
        "loop_ms": (cpu_after[1] - cpu_before[1]) * 1000 / max(1, result["ok"]),
        "load": os.getloadavg()[0],
    }


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, help="serve's HTTP processes")
    parser.add_argument("--log-level", default="INFO", help="serve's (INFO logs each request)")
    parser.add_argument(
        "--committers", type=int, default=1, help="SUPPLYCHAIN_INTAKE_COMMITTERS (PostgreSQL)"
    )
    parser.add_argument("--batch-ms", type=float, default=2.0, help="SUPPLYCHAIN_INTAKE_BATCH_MS")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(
        f"{args.connections} connections, {args.seconds} s per run, {args.runs} runs, "
        f"{args.processes} HTTP process(es), {os.cpu_count()} CPUs\n"
    )
    print(
        "| database | events/s | p50 ms | p99 ms | non-2xx | lost | serve CPU ms/event "
        "| of it event loops | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.db.split(","):
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="intake-bench-") as tmp:
                runs.append(one_run(kind, Path(tmp), args))
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"| {kind} | {med['rate']:.0f} | {med['p50']:.1f} | {med['p99']:.1f} "
            f"| {max(r['bad'] for r in runs):.0f} | {max(r['lost'] for r in runs):.0f} "
            f"| {med['cpu_ms']:.2f} | {med['loop_ms']:.2f} | {med['load']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
