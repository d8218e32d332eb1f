"""``supplychain scan``: the same pipeline and the same decision, in this process, no server."""

from __future__ import annotations

import shutil
from typing import Any

from sbom.local import LOCAL_PREFIXES
from supplychain.config import Settings
from supplychain.evidence.recorder import record_facts, record_tag, upsert_image
from supplychain.interface import ImageTarget, Verdict
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.queue.expand import expand_index
from supplychain.reference import ReferenceError, parse_reference
from supplychain.service import build_service
from supplychain.stages.localsource import LocalSource, NoSignatures
from supplychain.stages.pipeline import Outcome, Pipeline

__all__ = ["scan_image"]


def scan_image(settings: Settings, image: str, *, platform: str | None = None) -> dict[str, Any]:
    """Pull, catalogue, scan, verify and decide on ``image``; record it; return the JSON answer.

    ``image`` is ``host/repo:tag``, ``host/repo@sha256:…``, ``oci:DIR[:TAG]`` or
    ``docker-archive:FILE``. The registry named on the command line is allowed for this run (the
    user asked for it). The verdict is the one decision on the facts recorded (what the gate
    answers for this digest). Errors come back as ``{"decision": "error", "error": …}``: never as
    an allow.
    """
    if image.startswith(LOCAL_PREFIXES):
        return _scan_local(settings, image)
    try:
        ref = parse_reference(image)
    except ReferenceError as exc:
        return {"image": image, "decision": "error", "error": str(exc)}
    service = build_service(settings, allowed=settings.registries | {ref.registry})
    top = ImageTarget(ref.registry, ref.repository, "", ref.tag)
    try:
        descriptor = service.client.resolve(ref)
        top = ImageTarget(ref.registry, ref.repository, descriptor.digest, ref.tag)
        targets = [top]
        expansion = None
        if descriptor.media_type in INDEX_MEDIA_TYPES:
            index = service.client.get_manifest(ref.registry, ref.repository, descriptor.digest)
            expansion = expand_index(
                service.client,
                top,
                index.media_type,
                index.data,
                max_entries=settings.index_max_entries,
                max_depth=settings.index_max_depth,
            )
            wanted = {
                entry.digest
                for record in expansion.indexes
                for entry in record.entries
                if entry.kind == "image" and platform in (None, entry.platform)
            }
            targets = [t for t in expansion.images if t.digest in wanted]
        outcomes = [_run(service.pipeline.run, target) for target in targets]
    except Exception as exc:  # any failure is reported, and fails closed
        return {"image": image, "decision": "error", "error": f"{type(exc).__name__}: {exc}"}
    with service.db.session(write=True) as session:
        if expansion is not None:
            expansion.record(session)
        for outcome in outcomes:
            record_facts(session, outcome, job_id=None, actor="cli-scan")
        row = upsert_image(session, top, media_type=descriptor.media_type)
        if ref.tag:
            record_tag(session, top, ref.tag, source="cli-scan")
        verdict = service.decider.verdict(session, row, platform=platform)
    return _answer(image, descriptor.digest, ref.pinned(descriptor.digest), verdict, outcomes)


def _scan_local(settings: Settings, image: str) -> dict[str, Any]:
    """``oci:DIR[:TAG]`` or ``docker-archive:FILE``: the same stages, no registry, no signatures."""
    service = build_service(settings)
    try:
        source = LocalSource(image, settings.data_dir / "work")
        target = source.target()
        stages = service.pipeline
        pipeline = Pipeline(source, stages.cataloger, stages.scanner, NoSignatures())
        outcome = _run(pipeline.run, target)
    except Exception as exc:  # any failure is reported, and fails closed
        return {"image": image, "decision": "error", "error": f"{type(exc).__name__}: {exc}"}
    with service.db.session(write=True) as session:
        row, _scan_id = record_facts(session, outcome, job_id=None, actor="cli-scan")
        verdict = service.decider.verdict(session, row)
    return _answer(image, target.digest, None, verdict, [outcome])


def _answer(
    image: str, digest: str, pinned: str | None, verdict: Verdict, outcomes: list[Outcome]
) -> dict[str, Any]:
    return {
        "image": image,
        "digest": digest,
        "pinned": pinned,
        "decision": verdict.decision,
        "reasons": list(verdict.reasons),
        "policy": {"name": verdict.policy, "digest": verdict.policy_digest},
        "findings": [
            {
                "id": f.vuln_id,
                "package": f.package,
                "purl": f.purl,
                "installed": f.installed,
                "fixed": f.fixed,
                "severity": f.severity,
                "image": o.target.digest,
            }
            for o in outcomes
            for f in o.scan.findings
        ],
    }


def _run(run: Any, target: ImageTarget) -> Outcome:
    outcome: Outcome = run(target)
    shutil.rmtree(outcome.image.layout_dir, ignore_errors=True)
    return outcome
