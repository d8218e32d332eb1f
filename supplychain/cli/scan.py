"""``supplychain scan``: the same pipeline, in this process, without a server."""

from __future__ import annotations

import shutil
from typing import Any

from supplychain.config import Settings
from supplychain.evidence.recorder import record_outcome, record_tag
from supplychain.interface import Decision, ImageTarget, SourceError
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.reference import ReferenceError, parse_reference
from supplychain.registry.index import MAX_INDEX_ENTRIES, platform_images
from supplychain.service import build_service
from supplychain.stages.pipeline import Outcome

__all__ = ["scan_image"]


def scan_image(settings: Settings, image: str, *, platform: str | None = None) -> dict[str, Any]:
    """Pull, catalogue, scan, verify and decide on ``image``; record it; return the JSON answer.

    The registry named on the command line is allowed for this run (the user asked for it).
    Errors come back as ``{"decision": "error", "error": …}``: never as an allow.
    """
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
    decisions: list[Decision] = [o.verdict.decision for o in outcomes]
    decision = "deny" if "deny" in decisions else "pending" if "pending" in decisions else "allow"
    return {
        "image": image,
        "digest": descriptor.digest,
        "pinned": ref.pinned(descriptor.digest),
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
