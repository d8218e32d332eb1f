"""Benchmark: ``supplychain rematch`` over 10,000 stored SBOMs after a DB change (goal: ≤ 60 s).

Realistic SBOMs: each is Trivy's own CycloneDX SBOM of the test image (Debian bookworm minbase: its
real Debian packages, unchanged) whose PyPI and npm packages are replaced by a random draw from the
most downloaded PyPI and npm packages at their current versions (the package lists under
``/work/.library/env/packages``). They are stored in a fresh PostgreSQL database exactly as the
service stores them (scans.sbom, components, findings, a pipeline verdict each); setting up is not
timed.

Then the DB changes (new CRITICAL advisories for two popular PyPI packages, a severity raised on an
npm one), installed with ``supplychain vulndb import``, and what is timed is the command a user
runs:

* ``supplychain rematch``: a fresh process (``python -m supplychain.cli rematch``) on the seeded
  database, wall time from start to exit: it diffs the two DBs, picks the SBOMs naming a changed
  package with one query over the components table, matches the changed packages' distinct package
  URLs in one Trivy run, records findings, verdicts and revocations; the other SBOMs only move to
  the new DB.
* Trivy in the same run: one ``trivy sbom`` process per stored SBOM, sequentially (what rematching
  without us costs), timed on a sample and extrapolated to all SBOMs.

Both are timed ``--runs`` times (default 3), paired: each run of the command gets a fresh copy of
the seeded database (``CREATE DATABASE … TEMPLATE``), then Trivy's sample runs; medians reported.

Run: ``python3 bench/rematch_bench.py [--count 10000] [--sample 40] [--runs 3]`` from the
repository root.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supplychain.decide.policy import load_policy
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.sbomstore import pack, unpack
from supplychain.rematch.batch import match_packages
from supplychain.rematch.dbdiff import changed_packages
from supplychain.stages.scanner import TrivyRunner, finding_extras
from supplychain.stages.vulndb import VulnDbStore
from tests.support import images
from tests.support.trivydb import Advisory, build_trivy_db_archive

PACKAGES = Path("/work/.library/env/packages")
PIP = "pip::GitHub Security Advisory pip"
NPM = "npm::GitHub Security Advisory npm"
PG = os.environ.get("SUPPLYCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def popular(kind: str, limit: int) -> list[tuple[str, str]]:
    """The ``limit`` most downloaded packages with their current version."""
    path = PACKAGES / ("pypi.tsv" if kind == "pypi" else "npm.tsv")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if kind == "pypi":
        ranked = [r for r in rows if (r.get("rank_among_15000_most_downloaded") or "").isdigit()]
        ranked.sort(key=lambda r: int(r["rank_among_15000_most_downloaded"]))
    else:
        ranked = [r for r in rows if (r.get("downloads_a_month") or "").isdigit()]
        ranked.sort(key=lambda r: -int(r["downloads_a_month"]))
    out = [(r["name"], r["version"]) for r in ranked if r["version"] and "/" not in r["name"]]
    return out[:limit]


def stored(document: bytes) -> dict[str, Any]:
    """The scans columns for ``document`` as the service stores it (compressed, with its digest)."""
    data, encoding = pack(document)
    digest = "sha256:" + hashlib.sha256(document).hexdigest()
    return {"sbom": data, "sbom_encoding": encoding, "sbom_digest": digest}


def template_sbom(runner: TrivyRunner) -> dict[str, Any]:
    """Trivy's CycloneDX SBOM of the real test image, language packages removed."""
    layout = images.app_layout()
    flags = runner.common_flags()
    raw = runner.run(["image", "--input", f"{layout}:app", "--format", "cyclonedx", *flags])
    bom: dict[str, Any] = json.loads(raw)
    lang = [c for c in bom["components"] if str(c.get("purl", "")).startswith("pkg:pypi")]
    bom["x-layer"] = _property(lang[0], "aquasecurity:trivy:LayerDigest")
    bom["components"] = [
        c
        for c in bom["components"]
        if not str(c.get("purl", "")).startswith(("pkg:pypi", "pkg:npm"))
    ]
    return bom


def make_sbom(template: dict[str, Any], packages: list[tuple[str, str, str]]) -> dict[str, Any]:
    bom = copy.deepcopy(template)
    layer = bom.pop("x-layer")
    root = bom["metadata"]["component"]["bom-ref"]
    refs = []
    for kind, name, version in packages:
        purl = f"pkg:{kind}/{name.replace('@', '%40')}@{version}"
        site = "usr/local/lib/python3.11/site-packages" if kind == "pypi" else "app/node_modules"
        bom["components"].append(
            {
                "bom-ref": purl,
                "type": "library",
                "name": name,
                "version": version,
                "purl": purl,
                "properties": [
                    {"name": "aquasecurity:trivy:FilePath", "value": f"{site}/{name}"},
                    {"name": "aquasecurity:trivy:LayerDigest", "value": layer},
                    {
                        "name": "aquasecurity:trivy:PkgType",
                        "value": "python-pkg" if kind == "pypi" else "node-pkg",
                    },
                ],
            }
        )
        refs.append(purl)
    for dep in bom["dependencies"]:
        if dep["ref"] == root:
            dep["dependsOn"] = [r for r in dep["dependsOn"] if not r.startswith("pkg:")] + refs
    bom["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    return bom


def components_of(bom: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in bom["components"]:
        purl = c.get("purl")
        if c.get("type") != "library" or not purl:
            continue
        out.append(
            {
                "type": purl[4:].split("/", 1)[0],
                "name": c["name"][:512],
                "version": c["version"][:255],
                "purl": purl,
                "layer_digest": _property(c, "aquasecurity:trivy:LayerDigest"),
                "source_name": _property(c, "aquasecurity:trivy:SrcName"),
            }
        )
    return out


def _property(component: dict[str, Any], name: str) -> str | None:
    for prop in component.get("properties") or []:
        if prop.get("name") == name:
            return str(prop.get("value"))
    return None


def advisories(
    pip: list[tuple[str, str]], npm: list[tuple[str, str]]
) -> tuple[list[Advisory], ...]:
    """DB 1: advisories on 150 packages none of which deny; DB 2: three changes."""
    old: list[Advisory] = [
        Advisory("CVE-2023-45853", "debian 12", "zlib", "HIGH", fixed_version="1:1.2.13.dfsg-2")
    ]
    for i, (name, _) in enumerate(pip[:100]):
        old.append(
            Advisory(
                f"CVE-2090-{i:04d}", PIP, name.lower(), "MEDIUM", vulnerable_versions=("<0.0.1",)
            )
        )
    for i, (name, version) in enumerate(npm[:50]):
        old.append(
            Advisory(f"CVE-2091-{i:04d}", NPM, name, "LOW", vulnerable_versions=(f"<={version}",))
        )
    new = [
        *old[:-1],
        replace(old[-1], severity="HIGH"),  # a severity raised (npm)
        Advisory(
            "CVE-2099-0001", PIP, pip[40][0].lower(), "CRITICAL", vulnerable_versions=(">=0",)
        ),
        Advisory(
            "CVE-2099-0002", PIP, pip[70][0].lower(), "CRITICAL", vulnerable_versions=(">=0",)
        ),
    ]
    return old, new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs, each on a fresh copy of the seeded DB"
    )
    parser.add_argument(
        "--profile", type=Path, help="also write a cProfile of the command to this file"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rematch-bench-"))
    pip, npm = popular("pypi", 300), popular("npm", 300)
    old_advisories, new_advisories = advisories(pip, npm)
    updated = datetime.now(UTC) - timedelta(hours=1)
    runner = TrivyRunner(None, work / "trivy", offline=True, timeout=600)
    store = VulnDbStore(work / "trivy", runner)
    store.import_archive(build_trivy_db_archive(work / "old.tar.gz", old_advisories, updated))
    old_db = store.current()
    assert old_db is not None
    template = template_sbom(runner)

    name = f"sc_bench_{uuid.uuid4().hex[:8]}"
    copies: list[str] = []
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"{PG}/{name}")
    try:
        db.upgrade()
        t0 = time.perf_counter()
        seed(db, runner, template, pip, npm, rng, args.count, old_db.digest, updated)
        setup = time.perf_counter() - t0
        archive = build_trivy_db_archive(work / "new.tar.gz", new_advisories, updated)
        env = {
            **os.environ,
            "SUPPLYCHAIN_DATABASE_URL": f"{PG}/{name}",
            "SUPPLYCHAIN_DATA_DIR": str(work / "data"),
            "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(work / "trivy"),
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_TRIVY_TIMEOUT": "600",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        cli = [sys.executable, "-m", "supplychain.cli"]
        profiled = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m"]
        subprocess.run([*cli, "vulndb", "import", str(archive)], env=env, check=True)
        new_db = store.current()
        assert new_db is not None and new_db.digest != old_db.digest
        diff = changed_packages(old_db.path / "db" / "trivy.db", new_db.path / "db" / "trivy.db")

        db.dispose()  # a template database must have no connection
        with db.session() as session:
            ids = list(session.scalars(select(models.Scan.id).order_by(models.Scan.id)))
            sample = rng.sample(ids, min(args.sample, len(ids)))
            rows = [session.get(models.Scan, i) for i in sample]
            docs = [unpack(r.sbom, r.sbom_encoding) for r in rows if r is not None]
        db.dispose()
        timed = [*profiled, "supplychain.cli"] if args.profile else cli
        commands: list[float] = []
        trivy_each: list[float] = []
        for run in range(args.runs):  # paired: the command on a fresh copy, then Trivy's sample
            copy_name = f"{name}_run{run}"
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{copy_name}" TEMPLATE "{name}"')
            copies.append(copy_name)
            env["SUPPLYCHAIN_DATABASE_URL"] = f"{PG}/{copy_name}"
            t0 = time.perf_counter()
            done = subprocess.run([*timed, "rematch"], env=env, capture_output=True, text=True)
            commands.append(time.perf_counter() - t0)
            if done.returncode not in (0, 1):
                sys.stderr.write(done.stderr)
                raise SystemExit(f"supplychain rematch exited {done.returncode}")
            report = json.loads(done.stdout)
            t0 = time.perf_counter()
            for doc in docs:
                runner.scan_sbom(bytes(doc or b""))
            trivy_each.append((time.perf_counter() - t0) / len(docs))
        last = Database(f"{PG}/{copies[-1]}")
        try:
            with last.session() as session:
                stale = session.scalar(
                    select(func.count()).where(models.Scan.db_digest != new_db.digest)
                )
        finally:
            last.dispose()
        command = statistics.median(commands)
        naive_each = statistics.median(trivy_each)

        result = {
            "sboms": args.count,
            "sbom_bytes_avg": round(sum(len(d or b"") for d in docs) / len(docs)),
            "changed_packages": sorted(map(list, diff.packages)),
            "command": "supplychain rematch",
            "exit_code": done.returncode,
            "report": report,
            "scans_left_on_old_db": stale,
            "setup_seconds": round(setup, 1),
            "runs": args.runs,
            "command_seconds_each": [round(c, 2) for c in commands],
            "command_seconds": round(command, 2),
            "trivy_sbom_seconds_per_sbom_each": [round(t, 3) for t in trivy_each],
            "trivy_sbom_seconds_per_sbom": round(naive_each, 3),
            "trivy_sbom_seconds_extrapolated": round(naive_each * args.count, 1),
            "ratio_to_trivy": round(command / (naive_each * args.count), 4),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "trivy": runner.version(),
        }
        print(json.dumps(result, indent=2))
    finally:
        db.dispose()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            for dropped in [*copies, name]:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    return 0


def seed(
    db: Database,
    runner: TrivyRunner,
    template: dict[str, Any],
    pip: list[tuple[str, str]],
    npm: list[tuple[str, str]],
    rng: random.Random,
    count: int,
    db_digest: str,
    updated: datetime,
) -> None:
    """Store ``count`` SBOMs with components, their findings on the old DB and an allow each."""
    boms = []
    for _ in range(count):
        chosen = [("pypi", n, v) for n, v in rng.sample(pip, rng.randint(5, 40))]
        chosen += [("npm", n, v) for n, v in rng.sample(npm, rng.randint(0, 40))]
        boms.append(make_sbom(template, chosen))
    purls = sorted({c["purl"] for b in boms for c in components_of(b) if c["type"] != "deb"})
    found, _ = match_packages(runner, purls)
    policy = load_policy(None)
    now = datetime.now(UTC)
    for start in range(0, count, 500):
        chunk = boms[start : start + 500]
        with db.session() as session:
            image_ids = session.scalars(
                insert(models.Image).returning(models.Image.id),
                [
                    {
                        "host": "registry.example",
                        "repository": f"team/app{start + i}",
                        "digest": f"sha256:{uuid.uuid4().hex * 2}",
                    }
                    for i in range(len(chunk))
                ],
            ).all()
            scan_ids = session.scalars(
                insert(models.Scan).returning(models.Scan.id),
                [
                    {
                        "image_id": image_id,
                        "finished_at": now,
                        "scanner": "trivy",
                        "scanner_version": runner.version(),
                        "db_digest": db_digest,
                        "db_updated_at": updated,
                        "sbom_format": "cyclonedx-json",
                        **stored(json.dumps(bom, separators=(",", ":")).encode()),
                    }
                    for image_id, bom in zip(image_ids, chunk, strict=True)
                ],
            ).all()
            comps, findings, verdicts = [], [], []
            for image_id, scan_id, bom in zip(image_ids, scan_ids, chunk, strict=True):
                for c in components_of(bom):
                    comps.append({**c, "scan_id": scan_id, "image_id": image_id})
                    for f in found.get(c["purl"], []):
                        findings.append(
                            {
                                "scan_id": scan_id,
                                "image_id": image_id,
                                "vuln_id": f.vuln_id,
                                "package": f.package,
                                "purl": f.purl,
                                "installed": f.installed,
                                "fixed": f.fixed,
                                "severity": f.severity,
                                "status": f.status,
                                "data_source": f.data_source,
                                **finding_extras(f),
                            }
                        )
                verdicts.append(
                    {
                        "image_id": image_id,
                        "scan_id": scan_id,
                        "context": "pipeline",
                        "decision": "allow",
                        "reasons": ["no finding of severity CRITICAL"],
                        "policy": policy.name,
                        "policy_digest": policy.digest,
                        "evaluated_at": now,
                    }
                )
            session.execute(insert(models.Component), comps)
            if findings:
                session.execute(insert(models.Finding), findings)
            session.execute(insert(models.Verdict), verdicts)


if __name__ == "__main__":
    raise SystemExit(main())
