"""Asks the gate about every image of an admitted object; answers the AdmissionReview.

The same decision as ``supplychain gate``: each distinct image is decided by
:meth:`~supplychain.decide.gate.Gate.decide` (resolving the tag at the registry, recording the
verdict). Fail closed: an image not allowed denies the object; a gate that cannot answer (database,
registry or scanner unavailable) denies it in either mode. ``audit`` mode admits objects whose
images the policy denies or has not decided yet, with a warning for each. The policy's own
``warn`` messages on allowed images are answered as warnings in both modes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from supplychain.admission.answer import pin_patch, response
from supplychain.admission.review import AdmissionRequest, read_review
from supplychain.decide.gate import Gate, GateError

__all__ = ["Admission", "ImageAnswer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageAnswer:
    """The gate's answer on one image of the object."""

    decision: str
    """allow, deny, pending or error (the gate could not answer)."""
    pinned: str | None
    """``registry/repository@digest`` to run instead of the tag."""
    reasons: tuple[str, ...]
    """Why."""


def _policy_warnings(request: AdmissionRequest, answers: dict[str, ImageAnswer]) -> list[str]:
    """The policy's ``warn`` messages (reasons ``warning: …``) on the images it allowed, once
    each: they never refuse, but the API server shows them to whoever created the object."""
    shown: list[str] = []
    for image in dict.fromkeys(i.image for i in request.images):
        answer = answers[image]
        if answer.decision == "allow":
            shown += [
                f"supplychain: {image}: {reason.replace('warning: ', '', 1)}"
                for reason in answer.reasons
                if reason.startswith("warning: ") or ": warning: " in reason
            ]
    return list(dict.fromkeys(shown))


class Admission:
    """Validating and mutating admission on the gate."""

    def __init__(self, gate: Gate, *, mode: str = "enforce", wait: float = 5.0) -> None:
        if mode not in ("enforce", "audit"):
            raise ValueError(f"admission mode {mode!r}")
        self.gate = gate
        self.mode = mode
        self.wait = wait

    def review(self, body: bytes, *, mutate: bool) -> dict[str, Any]:
        """The AdmissionReview answering ``body``; raises ``AdmissionError`` when malformed."""
        request = read_review(body)
        if not request.supported:
            return response(
                request.uid, False, message=f"supplychain: kind {request.kind} is not supported"
            )
        answers = self._decide(request)
        refused = [
            f"{image.container or image.pointer}: {image.image}: {answers[image.image].decision}"
            + (f" ({'; '.join(answers[image.image].reasons[:3])})" if answers[image.image].reasons
               else "")
            for image in request.images
            if answers[image.image].decision != "allow"
        ]  # fmt: skip
        broken = any(answers[i.image].decision == "error" for i in request.images)
        allowed = not refused or (self.mode == "audit" and not broken)
        patch = None
        if mutate and allowed:
            patch = pin_patch(
                [
                    (image.pointer, pinned)
                    for image in request.images
                    if (pinned := answers[image.image].pinned) and pinned != image.image
                ]
            )
        where = f"{request.kind} {request.namespace or ''}/{request.name or ''}"
        if not allowed:
            return response(
                request.uid, False, message=f"supplychain denied {where}: " + "; ".join(refused)
            )
        warnings = [f"supplychain (audit): {line}" for line in refused]
        warnings += _policy_warnings(request, answers)
        return response(request.uid, True, warnings=warnings, patch=patch or None)

    def _decide(self, request: AdmissionRequest) -> dict[str, ImageAnswer]:
        deadline = time.monotonic() + self.wait
        answers: dict[str, ImageAnswer] = {}
        for image in request.images:
            if image.image in answers:
                continue
            wait = max(0.0, deadline - time.monotonic())
            try:
                answer = self.gate.decide(image.image, wait=wait)
            except GateError as exc:
                answers[image.image] = ImageAnswer("error", None, (str(exc),))
                continue
            except Exception as exc:  # database down, anything: never an allow
                log.warning("admission: gate failed on %s: %s", image.image, type(exc).__name__)
                reason = f"the gate could not answer: {type(exc).__name__}"
                answers[image.image] = ImageAnswer("error", None, (reason,))
                continue
            answers[image.image] = ImageAnswer(answer.decision, answer.pinned, answer.reasons)
        return answers
