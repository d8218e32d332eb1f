"""One image digest at a time: pull → SBOM → vulnerability scan → signatures → policy → verdict.

Each stage is behind its interface (:mod:`supplychain.interface`); the pipeline only passes the
values along and times each stage. It records nothing: the recorder writes the outcome in the same
transaction that completes the job.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from supplychain.decide.vex_attested import with_attested_vex
from supplychain.interface import (
    Cataloger,
    Evidence,
    ImageSource,
    ImageTarget,
    Policy,
    PulledImage,
    Sbom,
    Scanner,
    ScanResult,
    SignatureEvidence,
    Verdict,
    Verifier,
)

__all__ = ["Outcome", "Pipeline"]

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """Everything one pipeline run produced for one image."""

    target: ImageTarget
    """The image processed."""
    image: PulledImage
    """The pulled, verified image."""
    sbom: Sbom
    """Its SBOM."""
    scan: ScanResult
    """Its vulnerability scan."""
    signatures: tuple[SignatureEvidence, ...]
    """Signatures and attestations found."""
    verdict: Verdict
    """The policy's decision."""
    stage_seconds: dict[str, float]
    """Wall time of each stage."""


class Pipeline:
    """Runs the stages in order for one image."""

    def __init__(
        self,
        source: ImageSource,
        cataloger: Cataloger,
        scanner: Scanner,
        verifier: Verifier,
        policy: Policy,
    ) -> None:
        self.source = source
        self.cataloger = cataloger
        self.scanner = scanner
        self.verifier = verifier
        self.policy = policy

    def run(self, target: ImageTarget, *, progress: Callable[[str], None] | None = None) -> Outcome:
        """Process ``target``; a stage's error propagates (the job fails with its reason).

        ``progress(stage)`` is called as each stage starts (the worker's stage deadlines). The
        pulled image's work folder is removed when a later stage fails.
        """
        timings: dict[str, float] = {}

        def timed(stage: str, call: Callable[[], T]) -> T:
            if progress is not None:
                progress(stage)
            start = time.perf_counter()
            try:
                return call()
            finally:
                timings[stage] = round(time.perf_counter() - start, 4)

        image = timed("pull", lambda: self.source.pull(target))
        try:
            sbom = timed("sbom", lambda: self.cataloger.catalog(image))
            scan = timed("scan", lambda: self.scanner.scan(image, sbom))
            signatures = timed("verify", lambda: self.verifier.verify(image))
            scan = with_attested_vex(scan, signatures, target.digest)
            evidence = Evidence(image, sbom, scan, signatures)
            verdict = timed("policy", lambda: self.policy.evaluate(evidence))
        except BaseException:
            shutil.rmtree(image.layout_dir, ignore_errors=True)
            raise
        return Outcome(target, image, sbom, scan, signatures, verdict, timings)
