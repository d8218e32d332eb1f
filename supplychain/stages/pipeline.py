"""One image digest at a time: pull → SBOM → vulnerability scan → signatures: facts, no verdict.

Each stage is behind its interface (:mod:`supplychain.interface`); the pipeline only passes the
values along and times each stage. It records and decides nothing: the worker records the facts,
then the one decision function (:mod:`supplychain.decide.decision`) decides on the facts loaded
back, in the same transaction that completes the job.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from supplychain.interface import (
    Cataloger,
    ImageSource,
    ImageTarget,
    PulledImage,
    Sbom,
    Scanner,
    ScanResult,
    SignatureEvidence,
    Verifier,
)
from supplychain.stages.children import CHILDREN

__all__ = ["Outcome", "Pipeline"]

T = TypeVar("T")


class _Timed(Protocol):
    def __call__(self, stage: str, call: Callable[[], T]) -> T: ...


@dataclass(frozen=True)
class Outcome:
    """The facts one pipeline run found for one image."""

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
    ) -> None:
        self.source = source
        self.cataloger = cataloger
        self.scanner = scanner
        self.verifier = verifier

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
            if self.scanner.uses_sbom:
                sbom = timed("sbom", lambda: self.cataloger.catalog(image))
                scan = timed("scan", lambda: self.scanner.scan(image, sbom))
            else:  # independent: the scan (a Trivy process) runs while our SBOM is made
                sbom, scan, timings["scan"] = self._together(image, timed)
            signatures = timed("verify", lambda: self.verifier.verify(image))
        except BaseException:
            shutil.rmtree(image.layout_dir, ignore_errors=True)
            raise
        return Outcome(target, image, sbom, scan, signatures, timings)

    def _together(self, image: PulledImage, timed: _Timed) -> tuple[Sbom, ScanResult, float]:
        """The scan in a helper thread while the SBOM is made here, and the scan's own seconds.

        The stage in progress is ``sbom``, then ``scan`` while its end is awaited; the Trivy
        child belongs to this thread, so an attempt ended at either deadline ends it too.
        """
        owner = threading.get_ident()
        took: list[float] = []

        def scan() -> ScanResult:
            start = time.perf_counter()
            try:
                with CHILDREN.owned_by(owner):
                    return self.scanner.scan(image, None)
            finally:
                took.append(time.perf_counter() - start)

        with ThreadPoolExecutor(1, thread_name_prefix="scan") as pool:
            scanning = pool.submit(scan)
            sbom = timed("sbom", lambda: self.cataloger.catalog(image))
            result = timed("scan", lambda: scanning.result())
        return sbom, result, round(took[0], 4)
