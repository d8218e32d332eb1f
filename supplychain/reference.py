"""Parsing of image references: ``host[:port]/repo[:tag][@sha256:hex]``.

The grammar follows distribution's ``reference`` package: the first path
component is a registry host when it contains a dot or a colon or is
``localhost``; otherwise the reference is on Docker Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DIGEST_RE",
    "ImageReference",
    "ReferenceError",
    "parse_reference",
    "valid_digest",
    "valid_repository",
    "valid_tag",
]

DOCKER_HUB = "docker.io"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$")


def valid_digest(value: str) -> bool:
    """``sha256:<64 lowercase hex>``: the only digest form accepted."""
    return bool(DIGEST_RE.match(value))


def valid_repository(value: str) -> bool:
    """A repository path as distribution accepts it."""
    return len(value) <= 255 and bool(_REPO_RE.match(value))


def valid_tag(value: str) -> bool:
    """A tag as distribution accepts it."""
    return bool(_TAG_RE.match(value))


class ReferenceError(ValueError):
    """An image reference that does not follow the grammar."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference; at least one of ``tag`` and ``digest`` is set."""

    registry: str
    """Registry host with optional port, e.g. ``127.0.0.1:5000`` or ``docker.io``."""
    repository: str
    """Repository path inside the registry, e.g. ``team/app``."""
    tag: str | None = None
    """Tag, when the reference names one."""
    digest: str | None = None
    """Manifest digest ``sha256:<hex>``, when the reference pins one."""

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in a registry URL: the digest if pinned, else the tag."""
        if self.digest:
            return self.digest
        assert self.tag is not None  # noqa: S101 - guaranteed by parse_reference
        return self.tag

    def pinned(self, digest: str | None = None) -> str:
        """The reference pinned by digest: ``registry/repository@sha256:…``."""
        value = digest or self.digest
        if value is None or not DIGEST_RE.match(value):
            raise ReferenceError(f"no valid digest to pin {self}")
        return f"{self.name}@{value}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` into an :class:`ImageReference`; a missing tag means ``latest``."""
    if not text or len(text) > 1024 or text != text.strip():
        raise ReferenceError(f"invalid image reference {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ReferenceError(f"invalid digest in {text!r}: only sha256:<64 hex> is accepted")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError(f"invalid tag {tag!r} in {text!r}")
    if not _HOST_RE.match(registry):
        raise ReferenceError(f"invalid registry host {registry!r} in {text!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _REPO_RE.match(path) or len(path) > 255:
        raise ReferenceError(f"invalid repository {path!r} in {text!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry.lower(), path, tag, digest)
