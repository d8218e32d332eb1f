"""SBOM benchmark: our ``sbom`` against ``trivy image --format cyclonedx`` on the same image.

Ours is ``supplychain sbom oci:LAYOUT:TAG -o FILE`` exactly as a user runs it (CycloneDX JSON; the
local layout's blobs are hashed against their digests as they are read). Each run is a fresh
process with a cold cache (Trivy's layer cache is wiped too; its vuln DB is a
tiny offline one); we report medians of wall time and peak RSS, and the time of a second image
that shares all but its top layer with the first one (our per-layer cache warm from the first).

    python3 bench/sbom_bench.py [--runs 5] [--layout DIR --tag TAG --base-tag TAG]
                                [--bytecode compiled|source]

Without ``--layout`` it uses the test images (Debian bookworm + pip/npm + a deleting layer).
``--bytecode compiled`` (the default) compiles our modules' bytecode first, as ``pip install``
does and as Python itself does on a module's first import; ``source`` measures every run
compiling them from source again (what a machine with ``PYTHONDONTWRITEBYTECODE=1`` and no
``__pycache__`` does: this one sets that variable).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IN_PROCESS = """
import dataclasses, json, statistics, sys, tempfile, time
from pathlib import Path
from sbom import generate_sbom, write_cyclonedx
from sbom.local import oci_layout
layout, tag, base, runs = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
# as in the service, the blobs were verified when they were pulled: not hashed again here
layers, info = oci_layout(layout, tag)
layers = [dataclasses.replace(layer, verified=True) for layer in layers]
base_layers, base_info = oci_layout(layout, base)
base_layers = [dataclasses.replace(layer, verified=True) for layer in base_layers]
cold, warm, write = [], [], []
for _ in range(runs):
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        result = generate_sbom(layers, info, Path(cache))
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_cyclonedx(result)
        write.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as cache:
        generate_sbom(base_layers, base_info, Path(cache))
        start = time.perf_counter()
        generate_sbom(layers, info, Path(cache))
        warm.append(time.perf_counter() - start)
print(json.dumps([statistics.median(x) for x in (cold, warm, write)]))
"""


PACKAGES = ("supplychain", "sbom", "registry_hooks")


def bytecode(mode: str) -> None:
    """Our modules' bytecode compiled now (``compiled``) or removed (``source``)."""
    for package in PACKAGES:
        if mode == "compiled":
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / package)],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        else:
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # for the runs that follow
            for cache in (ROOT / package).rglob("__pycache__"):
                shutil.rmtree(cache)


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"failed: {' '.join(command)}\n{proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss


def ours(layout: Path, tag: str, cache: Path, out: Path) -> list[str]:
    """The command a user runs: ``supplychain sbom oci:LAYOUT:TAG -o OUT`` (a fresh process)."""
    image = f"oci:{layout}:{tag}"
    cli = [sys.executable, "-m", "supplychain.cli", "sbom", image]
    return [*cli, "-o", str(out), "--cache-dir", str(cache)]


def trivy(layout: Path, tag: str, cache: Path, out: Path) -> list[str]:
    return [
        "trivy", "image", "--input", f"{layout}:{tag}", "--format", "cyclonedx", "--output",
        str(out), "--cache-dir", str(cache), "--quiet", "--skip-version-check",
        "--offline-scan", "--skip-db-update", "--skip-java-db-update",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", type=Path)
    parser.add_argument("--tag", default="app-deleted")
    parser.add_argument("--base-tag", default="app", help="the first image of the pair")
    parser.add_argument("--bytecode", choices=("compiled", "source"), default="compiled")
    args = parser.parse_args()
    bytecode(args.bytecode)
    from tests.support.images import app_layout
    from tests.support.trivydb import Advisory, build_trivy_db

    layout = args.layout or app_layout()
    size = sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())
    rows: dict[str, list[tuple[float, int]]] = {"ours": [], "trivy": [], "second": []}
    ratios: list[float] = []  # paired: ours / Trivy's of the same run
    with tempfile.TemporaryDirectory(prefix="sbom-bench-") as tmp:
        work = Path(tmp)
        trivy_cache = work / "trivy"
        build_trivy_db(trivy_cache, [Advisory("CVE-0000-0001", "debian 12", "none", "LOW")])
        for _ in range(args.runs):
            shutil.rmtree(trivy_cache / "fanal", ignore_errors=True)
            rows["trivy"].append(measure(trivy(layout, args.tag, trivy_cache, work / "t.json")))
            cache = work / "ours-cache"
            shutil.rmtree(cache, ignore_errors=True)
            rows["ours"].append(measure(ours(layout, args.tag, cache, work / "o.json")))
            ratios.append(rows["ours"][-1][0] / rows["trivy"][-1][0])
            shutil.rmtree(cache, ignore_errors=True)
            measure(ours(layout, args.base_tag, cache, work / "b.json"))  # warms the base layers
            rows["second"].append(measure(ours(layout, args.tag, cache, work / "s.json")))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v))
           for k, v in rows.items()}  # fmt: skip
    print(f"image: {layout}:{args.tag} ({size / 1e6:.0f} MB of blobs in the layout), "
          f"{args.runs} runs, cores: {os.cpu_count()}, our bytecode: {args.bytecode}")  # fmt: skip
    print("| | wall time (median) | peak RSS (median) |")
    print("|---|---|---|")
    for key, label in (("trivy", "trivy image --format cyclonedx"), ("ours", "ours, cold cache"),
                       ("second", f"ours, 2nd image (after {args.base_tag})")):  # fmt: skip
        wall, rss = med[key]
        print(f"| {label} | {wall:.3f} s | {rss / 1024:.0f} MiB |")
    child = [sys.executable, "-c", IN_PROCESS, str(layout), args.tag, args.base_tag]
    done = subprocess.run([*child, str(args.runs)], capture_output=True, check=True, cwd=ROOT)
    cold, warm, write = json.loads(done.stdout)
    print(f"\nIn process (the service's path; imports paid once): SBOM {cold:.3f} s, "
          f"CycloneDX JSON writing {write:.3f} s, 2nd image {warm:.3f} s")  # fmt: skip
    print(f"in-process SBOM + writing / trivy: {(cold + write) / med['trivy'][0]:.2f}")
    print(f"in-process 2nd image / 1st image: {warm / cold:.2f}")
    print(f"\nours / trivy wall time: {med['ours'][0] / med['trivy'][0]:.2f} (goal <= 0.5); "
          f"median of the paired ratios {statistics.median(ratios):.2f}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"ours / trivy peak memory: {med['ours'][1] / med['trivy'][1]:.2f} (goal <= 1)")
    print(f"2nd image / 1st image: {med['second'][0] / med['ours'][0]:.2f} (goal <= 0.1)")


if __name__ == "__main__":
    main()
