"""Partial rematch in one Trivy run: only the packages a DB change touches, across all SBOMs.

Whether a language package (PyPI, npm, Go …) is vulnerable depends on its package URL alone. So
when a DB change names only language packages
(:func:`supplychain.rematch.dbdiff.changed_packages`), the
distinct package URLs of those packages across every affected SBOM go into one small CycloneDX
document, matched by one ``trivy sbom`` run; each scan then gets the findings of its own
components (with their layers), while its other findings stay untouched. OS packages depend on
the distribution release and source package, so OS changes take the whole-SBOM path
(:meth:`Rematcher.run`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import unquote

from sqlalchemy import func, or_, select, tuple_

from supplychain.evidence import models
from supplychain.interface import ScanError, ScanResult
from supplychain.rematch.dbdiff import Key
from supplychain.rematch.plan import RematchPlan
from supplychain.rematch.run import Keep, Rematcher, RematchReport
from supplychain.stages.scanner import TrivyFinding, TrivyRunner

__all__ = ["match_packages", "rematch_packages", "rematch_planned"]

BATCH = 20000
"""Package URLs per Trivy run."""


def _document(purls: list[str]) -> bytes:
    components = []
    for purl in purls:
        base = purl.split("?", 1)[0].split("#", 1)[0]
        name, _, version = base.rpartition("@")
        components.append(
            {
                "type": "library",
                "bom-ref": purl,
                "name": unquote(name.rsplit("/", 1)[-1]),
                "version": unquote(version),
                "purl": purl,
            }
        )
    root = {"type": "application", "name": "supplychain-rematch", "bom-ref": "rematch-root"}
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {"component": root},
        "components": components,
        "dependencies": [{"ref": "rematch-root", "dependsOn": purls}],
    }
    return json.dumps(bom).encode()


def match_packages(
    runner: TrivyRunner, purls: list[str]
) -> tuple[dict[str, list[TrivyFinding]], ScanResult]:
    """Findings per package URL, from as few Trivy runs as :data:`BATCH` allows (one DB)."""
    found: dict[str, list[TrivyFinding]] = {}
    result: ScanResult | None = None
    snapshot = runner.snapshot()
    for start in range(0, max(len(purls), 1), BATCH):
        chunk = purls[start : start + BATCH]
        with tempfile.NamedTemporaryFile(prefix="rematch-", suffix=".cdx.json") as handle:
            handle.write(_document(chunk))
            handle.flush()
            result = runner.scan_report(["sbom", "--scanners", "vuln", handle.name])
        if runner.snapshot() != snapshot:
            raise ScanError("the advisory DB changed during the rematch; run it again")
        for finding in result.findings:
            if isinstance(finding, TrivyFinding) and finding.bom_ref:
                found.setdefault(finding.bom_ref, []).append(finding)
    assert result is not None  # noqa: S101 - the loop runs at least once
    return found, result


def _keep(keys: set[Key]) -> Keep:
    def keep(row: models.Finding) -> bool:
        kind = (row.purl or "pkg:?/").removeprefix("pkg:").split("/", 1)[0]
        return (kind, row.package.lower()) not in keys

    return keep


def rematch_packages(
    rematcher: Rematcher, runner: TrivyRunner, scan_ids: list[int], keys: set[Key]
) -> RematchReport:
    """Rematch, in ``scan_ids``, the findings of the language packages ``keys`` only."""
    if any(name == "*" for _, name in keys):
        raise ValueError("OS package changes need whole-SBOM rematching")
    wanted = sorted({(kind, name.lower()) for kind, name in keys})
    components: dict[int, list[tuple[str, str | None]]] = {}
    with rematcher.db.session() as session:
        pair = tuple_(models.Component.type, func.lower(models.Component.name))
        for start in range(0, len(scan_ids), 1000):
            rows = session.execute(
                select(
                    models.Component.scan_id, models.Component.purl, models.Component.layer_digest
                ).where(
                    models.Component.scan_id.in_(scan_ids[start : start + 1000]),
                    models.Component.purl.is_not(None),
                    or_(*(pair.in_(wanted[i : i + 500]) for i in range(0, len(wanted), 500))),
                )
            )
            for scan_id, purl, layer in rows:
                components.setdefault(scan_id, []).append((str(purl), layer))
    try:
        found, result = match_packages(
            runner, sorted({p for items in components.values() for p, _ in items})
        )
    except ScanError as exc:
        return rematcher.record(((i, exc, None) for i in scan_ids), len(scan_ids))

    def results() -> Iterator[tuple[int, ScanResult, Keep]]:
        keep = _keep(set(wanted))
        for scan_id in scan_ids:
            mine = [
                replace(f, layer_digest=layer, bom_ref=None)
                for purl, layer in components.get(scan_id, [])
                for f in found.get(purl, [])
            ]
            yield scan_id, replace(result, findings=tuple(mine), report=b""), keep

    return rematcher.record(results(), len(scan_ids))


def rematch_planned(rematcher: Rematcher, runner: TrivyRunner, plan: RematchPlan) -> RematchReport:
    """Carry out ``plan``: its language-only scans in one batched Trivy run over the changed
    packages' distinct package URLs, the others whole (one ``trivy sbom`` each)."""
    whole = set(plan.whole)
    partial = [i for i in plan.match if i not in whole]
    reports = []
    if partial:
        reports.append(rematch_packages(rematcher, runner, partial, set(plan.packages)))
    if whole or not partial:
        reports.append(rematcher.run(sorted(whole)))
    return RematchReport(
        sum(r.selected for r in reports),
        sum(r.rematched for r in reports),
        sum(r.changed for r in reports),
        sum(r.revocations for r in reports),
        tuple(f for r in reports for f in r.failed),
        round(sum(r.seconds for r in reports), 3),
    )
