"""Reads ``admission.k8s.io/v1`` AdmissionReview requests: which images would run.

Every container of a Pod or of a workload's pod template (Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob, ReplicationController): init, regular and ephemeral containers alike.
The request is untrusted input: anything malformed raises :class:`AdmissionError` (answered 400,
which Kubernetes treats as a webhook failure: with ``failurePolicy: Fail`` the object is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "API_VERSION",
    "POD_SPECS",
    "AdmissionError",
    "AdmissionRequest",
    "ContainerImage",
    "read_review",
]

API_VERSION = "admission.k8s.io/v1"
POD_SPECS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
"""Where each kind keeps its pod spec."""
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
MAX_CONTAINERS = 512
MAX_IMAGE = 1024


class AdmissionError(ValueError):
    """The body is not an AdmissionReview request we can read."""


@dataclass(frozen=True)
class ContainerImage:
    """One container's image and where it sits in the object."""

    pointer: str
    """JSON pointer (RFC 6901) of the ``image`` field, e.g. ``/spec/containers/0/image``."""
    container: str
    """The container's name."""
    image: str
    """The image reference as written."""


@dataclass(frozen=True)
class AdmissionRequest:
    """What an AdmissionReview asks."""

    uid: str
    """The request's uid, echoed in the response."""
    kind: str
    """The object's kind (``Pod``, ``Deployment``…)."""
    namespace: str | None
    """The object's namespace."""
    name: str | None
    """The object's name (may be empty when generated)."""
    operation: str
    """CREATE, UPDATE, DELETE or CONNECT."""
    supported: bool
    """False for a kind without a pod spec we know (the answer denies)."""
    images: tuple[ContainerImage, ...]
    """Every container image of the object, init and ephemeral ones included."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _pod_images(obj: dict[str, Any], path: tuple[str, ...]) -> tuple[ContainerImage, ...]:
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        raise AdmissionError(f"the object has no pod spec at /{'/'.join(path)}")
    images: list[ContainerImage] = []
    for field in CONTAINER_LISTS:
        containers = spec.get(field)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise AdmissionError(f"{field} is not a list")
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                raise AdmissionError(f"{field}[{i}] is not an object")
            image = container.get("image")
            if not isinstance(image, str) or not image or len(image) > MAX_IMAGE:
                raise AdmissionError(f"{field}[{i}] has no valid image")
            pointer = "/" + "/".join((*path, field, str(i), "image"))
            images.append(ContainerImage(pointer, _text(container.get("name")) or "", image))
    if len(images) > MAX_CONTAINERS:
        raise AdmissionError(f"more than {MAX_CONTAINERS} containers")
    return tuple(images)


def read_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview body; :class:`AdmissionError` when malformed."""
    try:
        review = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdmissionError(f"not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise AdmissionError("not a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise AdmissionError(f"not an {API_VERSION} AdmissionReview")
    request = review.get("request")
    if not isinstance(request, dict):
        raise AdmissionError("no request")
    uid = _text(request.get("uid"))
    if not uid or len(uid) > 256:
        raise AdmissionError("request.uid is missing")
    gvk = request.get("kind")
    kind = _text(gvk.get("kind")) if isinstance(gvk, dict) else None
    operation = _text(request.get("operation"))
    if not kind or not operation:
        raise AdmissionError("request.kind and request.operation are required")
    obj = request.get("object")
    images: tuple[ContainerImage, ...] = ()
    supported = kind in POD_SPECS
    if operation in ("CREATE", "UPDATE") and supported:
        if not isinstance(obj, dict):
            raise AdmissionError(f"{operation} without an object")
        images = _pod_images(obj, POD_SPECS[kind])
    return AdmissionRequest(
        uid,
        kind,
        _text(request.get("namespace")),
        _text(request.get("name")),
        operation,
        supported or operation not in ("CREATE", "UPDATE"),
        images,
    )
