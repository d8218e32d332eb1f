"""Hostile-layer benchmark: peak RSS and time of ``supplychain sbom`` on every hostile image of
``tests/support/hostile_layers.py``, next to ``trivy image --format cyclonedx`` on the same layout.

Each run is a fresh process with its own ``TMPDIR`` and ``HOME``, cold caches, and the options
the tests use (bombs stop at ``--max-layer-bytes 1 GiB``). Peak RSS is the process's
``ru_maxrss``, read by a small launcher so the parent's own memory does not leak into it. Trivy
is killed past ``--trivy-cap`` MiB of RSS or ``--timeout`` seconds (reported as such), so a
hostile case cannot take the machine down.

    python3 bench/hostile_rss.py [--runs 1] [--case NAME ...] [--no-trivy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sbom_bench import trivy  # noqa: E402  (bench/ is the script's folder)

from tests.support.hostile_layers import CASES, Run, measure, run_sbom, sandbox_env, write_image  # noqa: E402
from tests.support.trivydb import Advisory, build_trivy_db  # noqa: E402


def outcome(run: Run) -> str:
    """``ok``, ``killed…`` or the reason the command gave, shortened."""
    if run.killed:
        return f"killed ({'over the RSS cap' if run.killed == 'rss' else 'timeout'})"
    if run.code == 0:
        return "ok"
    lines = run.stderr.strip().splitlines() or ["(no message)"]
    reason = lines[-1].removeprefix("supplychain sbom: ")
    if reason.startswith("layer sha256:"):
        reason = reason.split(": ", 1)[1]
    elif len(reason) > 90:  # Trivy's chain of wrapped errors: the innermost says why
        reason = "…" + reason[-89:]
    return f"exit {run.code}: {reason}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    parser.add_argument("--no-trivy", action="store_true")
    parser.add_argument("--trivy-cap", type=int, default=2048, help="MiB")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the runs and temp files
    names = args.case or sorted(CASES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        work = Path(tmp)
        trivy_cache = work / "trivy"
        if not args.no_trivy:
            build_trivy_db(trivy_cache, [Advisory("CVE-0000-0001", "debian 12", "none", "LOW")])
        for name in names:
            case = CASES[name]
            box = work / name
            outside, tmpdir, home = box / "outside", box / "tmp", box / "home"
            for folder in (outside, tmpdir, home):
                folder.mkdir(parents=True)
            image = write_image(box / "layout", "hostile", case.layers(outside))
            ours: list[Run] = []
            theirs: list[Run] = []
            for _ in range(args.runs):
                shutil.rmtree(box / "cache", ignore_errors=True)
                ours.append(
                    run_sbom(
                        image, *case.args, cache=box / "cache", tmpdir=tmpdir, home=home,
                        timeout=args.timeout,
                    )
                )  # fmt: skip
                if not args.no_trivy:
                    shutil.rmtree(trivy_cache / "fanal", ignore_errors=True)
                    command = trivy(box / "layout", "hostile", trivy_cache, box / "t.json")
                    theirs.append(
                        measure(
                            command, env=sandbox_env(tmpdir, home), cwd=home,
                            timeout=args.timeout, max_rss_mib=args.trivy_cap,
                        )
                    )  # fmt: skip
            rows.append((name, ours, theirs))
            print(f"done: {name}", file=sys.stderr)

    def cells(runs: list[Run]) -> str:
        if not runs:
            return "| | |"
        rss = statistics.median(r.peak_rss_mib for r in runs)
        wall = statistics.median(r.seconds for r in runs)
        return f"{outcome(runs[0])} | {rss:.0f} MiB | {wall:.1f} s"

    print(f"{args.runs} run(s) per case (medians), cores: {os.cpu_count()}, "
          f"Trivy capped at {args.trivy_cap} MiB RSS and {args.timeout:.0f} s")  # fmt: skip
    print("| case | ours: outcome | peak RSS | time | trivy: outcome | peak RSS | time |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, theirs in rows:
        print(f"| {name} | {cells(ours)} | {cells(theirs)} |")
    worst = max(r.peak_rss_mib for _, ours, _ in rows for r in ours)
    print(f"\nours, worst peak RSS over all cases: {worst:.0f} MiB (goal < 300)")


if __name__ == "__main__":
    main()
