"""Parsing of image references: ``host[:port]/repo[:tag][@sha256:hex]``.

The grammar is distribution's ``reference`` package, in :mod:`registry_hooks.grammar` (anchored
with ``fullmatch``, ASCII only, length limits, no control or bidi characters). The first path
component is a registry host when it contains a dot or a colon, is ``localhost`` or has an
uppercase letter; otherwise the reference is on Docker Hub (``docker.io``, ``library/`` for a
single component).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry_hooks.grammar import (
    GrammarError,
    check_digest,
    check_tag,
    check_text,
    split_name,
    valid_digest,
    valid_repository,
    valid_tag,
)

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
LEGACY_DOCKER_HUB = "index.docker.io"
MAX_REFERENCE = 1024
DIGEST_RE = re.compile(r"\Asha256:[a-f0-9]{64}\Z")
"""``sha256:<64 lowercase hex>``, anchored at both ends (``$`` would accept a trailing newline)."""


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
        if value is None or not valid_digest(value):
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
    """Parse ``text`` into an :class:`ImageReference`; a missing tag means ``latest``.

    Raises :class:`ReferenceError` (never anything else) for anything outside the grammar.
    """
    if not isinstance(text, str) or not text:
        raise ReferenceError("empty image reference")
    try:
        check_text(text, "image reference", MAX_REFERENCE)
        rest, at, digest = text.partition("@")
        if at:
            check_digest(digest, "image reference digest")
        tag = None
        colon, slash = rest.rfind(":"), rest.rfind("/")
        if colon > slash:
            rest, tag = rest[:colon], check_tag(rest[colon + 1 :], "image reference tag")
        host, path = split_name(rest, "image reference name")
    except GrammarError as exc:
        raise ReferenceError(f"invalid image reference: {exc}") from None
    registry = (host or DOCKER_HUB).lower()
    if registry == LEGACY_DOCKER_HUB:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not valid_repository(path):
        raise ReferenceError(f"invalid image reference: repository {path[:100]!a} is too long")
    if tag is None and not at:
        tag = "latest"
    return ImageReference(registry, path, tag, digest if at else None)
