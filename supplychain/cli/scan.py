"""``supplychain scan``: the same pipeline, in this process, without a server."""

from __future__ import annotations

import shutil
from typing import Any

from sbom.local import LOCAL_PREFIXES
from supplychain.config import Settings
from supplychain.evidence.recorder import record_outcome, record_tag
from supplychain.interface import Decision, ImageTarget, SourceError
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.reference import ReferenceError, parse_reference
from supplychain.registry.index import MAX_INDEX_ENTRIES, platform_images
from supplychain.service import Service, build_service
from supplychain.stages.localsource import LocalSource, NoSignatures
from supplychain.stages.pipeline import Outcome, Pipeline

__all__ = ["scan_image"]


def scan_image(settings: Settings, image: str, *, platform: str | None = None) -> dict[str, Any]:
    """Pull, catalogue, scan, verify and decide on ``image``; record it; return the JSON answer.

    ``image`` is ``host/repo:tag``, ``host/repo@sha256:…``, ``oci:DIR[:TAG]`` or
    ``docker-archive:FILE``. The registry named on the command line is allowed for this run (the
    user asked for it). Errors come back as ``{"decision": "error", "error": …}``: never as an
    allow.
    """
    if image.startswith(LOCAL_PREFIXES):
        return _scan_local(settings, image)
    try:
        ref = parse_reference(image)
    except ReferenceError as exc:
        return {"image": image, "decision": "error", "error": str(exc)}
    service = build_service(settings, allowed=settings.registries | {ref.registry})
    try:
        descriptor = service.client.resolve(ref)
        targets = [ImageTarget(ref.registry, ref.repository, descriptor.digest, ref.tag)]
        if descriptor.media_type in INDEX_MEDIA_TYPES:
            index = service.client.get_manifest(ref.registry, ref.repository, descriptor.digest)
            targets = [
                ImageTarget(ref.registry, ref.repository, digest, None)
                for digest, _media, plat in platform_images(
                    index.data, max_entries=MAX_INDEX_ENTRIES
                )
                if platform is None or plat == platform
            ]
            if not targets:
                raise SourceError(f"the index has no image for platform {platform}")
        outcomes = [_run(service.pipeline.run, target) for target in targets]
    except Exception as exc:  # any failure is reported, and fails closed
        return {"image": image, "decision": "error", "error": f"{type(exc).__name__}: {exc}"}
    with service.db.session() as session:
        if ref.tag:
            record_tag(session, targets[0], ref.tag, source="cli-scan")
        for outcome in outcomes:
            record_outcome(session, outcome, job_id=None, actor="cli-scan")
    return _answer(image, descriptor.digest, ref.pinned(descriptor.digest), service, outcomes)


def _scan_local(settings: Settings, image: str) -> dict[str, Any]:
    """``oci:DIR[:TAG]`` or ``docker-archive:FILE``: the same stages, no registry, no signatures."""
    service = build_service(settings)
    try:
        source = LocalSource(image, settings.data_dir / "work")
        target = source.target()
        stages = service.pipeline
        pipeline = Pipeline(source, stages.cataloger, stages.scanner, NoSignatures(), stages.policy)
        outcome = _run(pipeline.run, target)
    except Exception as exc:  # any failure is reported, and fails closed
        return {"image": image, "decision": "error", "error": f"{type(exc).__name__}: {exc}"}
    with service.db.session() as session:
        record_outcome(session, outcome, job_id=None, actor="cli-scan")
    return _answer(image, target.digest, None, service, [outcome])


def _answer(
    image: str, digest: str, pinned: str | None, service: Service, outcomes: list[Outcome]
) -> dict[str, Any]:
    decisions: list[Decision] = [o.verdict.decision for o in outcomes]
    decision = "deny" if "deny" in decisions else "pending" if "pending" in decisions else "allow"
    return {
        "image": image,
        "digest": digest,
        "pinned": pinned,
        "decision": decision,
        "reasons": [r for o in outcomes for r in o.verdict.reasons],
        "policy": {"name": service.pipeline.policy.name, "digest": service.pipeline.policy.digest},
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
