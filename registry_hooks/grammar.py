"""The image reference grammar, and the characters no webhook or API string may carry.

Transcribed from distribution/reference ``regexp.go`` and ``reference.go`` (grammar and
``RepositoryNameTotalLengthMax`` = 255) and opencontainers/go-digest ``algorithm.go`` (registered
algorithms and their lowercase hex lengths). Differences from a naive port, on purpose:

- every pattern is matched with :func:`re.fullmatch` and compiled with :data:`re.ASCII`: Python's
  ``$`` also matches before a trailing newline (so ``team/app\\n`` passed) and Python's ``\\w``
  matches any Unicode letter, where Go's RE2 ``\\w`` is ASCII only;
- a digest must use a registered algorithm with its exact hex length, and the service pins images
  by ``sha256`` only (:func:`check_digest` says which rule a value broke);
- a port is at most 65535 and a host at most 255 characters (the grammar allows any digits).

Every ``check_*`` raises :class:`GrammarError` with a message that quotes at most a short, escaped
prefix of the offending value; every ``valid_*`` is the boolean form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = [
    "DIGEST_ALGORITHMS",
    "HOST_MAX",
    "REPOSITORY_MAX",
    "TAG_MAX",
    "GrammarError",
    "check_digest",
    "check_host",
    "check_repository",
    "check_tag",
    "check_text",
    "split_name",
    "unsafe_character",
    "valid_digest",
    "valid_host",
    "valid_repository",
    "valid_tag",
]

REPOSITORY_MAX = 255
"""distribution's ``RepositoryNameTotalLengthMax``: the path after the host."""
TAG_MAX = 128
"""The tag grammar ``[\\w][\\w.-]{0,127}`` allows at most 128 characters."""
HOST_MAX = 255
"""A DNS name is at most 253 characters; with a port this bound is generous."""
DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
"""go-digest's registered algorithms and the length of their lowercase hex encoding."""
ACCEPTED_ALGORITHM = "sha256"
"""The only algorithm the service pins images by."""

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN_AND_PORT = rf"{_HOST}(?::([0-9]+))?"

_REPOSITORY_RE = re.compile(_REMOTE_NAME, re.ASCII)
_HOST_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(
    r"([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})", re.ASCII
)
_LOWER_HEX = re.compile(r"[a-f0-9]+", re.ASCII)
_DIGEST_RULE = "digest must be sha256:<64 lowercase hex>"

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Bidirectional formatting characters (Unicode TR9): they make text display other than it is."""


class GrammarError(ValueError):
    """A string outside the reference grammar or carrying a forbidden character."""


def _shown(value: str) -> str:
    """A short, escaped rendering of untrusted ``value`` for an error message."""
    return ascii(value[:64]) + ("…" if len(value) > 64 else "")


def unsafe_character(value: str) -> str | None:
    """A description of the first control, bidi-override or separator character, or None.

    Refused: Unicode category Cc (C0/C1 controls: NUL, newline, escape…), line and paragraph
    separators (Zl, Zp), bidirectional formatting characters (U+202A to U+202E, U+2066 to U+2069,
    U+200E, U+200F, U+061C) and unassigned or private-use code points (Cn, Co, Cs).
    """
    if value.isascii() and value.isprintable():  # U+0020-U+007E: none of those (C speed)
        return None
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS:
            kind = "bidirectional control"
        elif category == "Cc":
            kind = "control character"
        elif category in ("Zl", "Zp"):
            kind = "line separator"
        elif category in ("Cn", "Co", "Cs"):
            kind = "unassigned or private-use character"
        else:
            continue
        return f"{kind} U+{ord(char):04X} at position {index}"
    return None


def check_text(value: str, field: str, limit: int = 1024) -> str:
    """``value`` if it is at most ``limit`` characters and carries no unsafe character."""
    if len(value) > limit:
        raise GrammarError(f"{field}: longer than {limit} characters")
    problem = unsafe_character(value)
    if problem is not None:
        raise GrammarError(f"{field}: {problem} is not allowed")
    return value


def check_repository(value: str, field: str = "repository") -> str:
    """A repository path (``team/app``): lowercase components, at most 255 characters."""
    check_text(value, field, 4096)
    if len(value) > REPOSITORY_MAX:
        raise GrammarError(f"{field}: longer than {REPOSITORY_MAX} characters")
    if _REPOSITORY_RE.fullmatch(value) is None:
        hint = " (must be lowercase)" if _REPOSITORY_RE.fullmatch(value.lower()) else ""
        raise GrammarError(f"{field}: {_shown(value)} is not a repository name{hint}")
    return value


def check_tag(value: str, field: str = "tag") -> str:
    """A tag: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``."""
    check_text(value, field, 4096)
    if _TAG_RE.fullmatch(value) is None:
        raise GrammarError(
            f"{field}: {_shown(value)} is not a tag (letters, digits, _ . -; at most {TAG_MAX})"
        )
    return value


def check_digest(value: str, field: str = "digest") -> str:
    """``sha256:<64 lowercase hex>``; the message says which rule another value broke."""
    check_text(value, field, 4096)
    match = _DIGEST_RE.fullmatch(value)
    if match is None:
        raise GrammarError(f"{field}: {_shown(value)} is not a digest; {_DIGEST_RULE}")
    algorithm, encoded = match.groups()
    size = DIGEST_ALGORITHMS.get(algorithm)
    if size is None:
        raise GrammarError(f"{field}: algorithm {_shown(algorithm)} is unknown; {_DIGEST_RULE}")
    if len(encoded) != size or _LOWER_HEX.fullmatch(encoded) is None:
        raise GrammarError(f"{field}: a {algorithm} digest has {size} lowercase hex digits")
    if algorithm != ACCEPTED_ALGORITHM:
        raise GrammarError(f"{field}: {algorithm} is not accepted; {_DIGEST_RULE}")
    return value


def check_host(value: str, field: str = "registry") -> str:
    """A registry host with optional port: a domain name, IPv4 or ``[IPv6]``, port ≤ 65535."""
    check_text(value, field, 4096)
    match = _HOST_RE.fullmatch(value) if len(value) <= HOST_MAX else None
    if match is None or (match.group(1) is not None and int(match.group(1)) > 65535):
        raise GrammarError(f"{field}: {_shown(value)} is not a registry host[:port]")
    return value


def split_name(name: str, field: str = "name") -> tuple[str | None, str]:
    """``[host/]path`` → (host or None, path), both checked; the first component is a host when
    it holds a dot or a colon, is ``localhost``, or has an uppercase letter (distribution's
    ``splitDockerDomain``)."""
    check_text(name, field, 4096)
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return check_host(first, field), check_repository(rest, field)
    return None, check_repository(name, field)


def _valid(check: Callable[[str], str], value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        check(value)
    except GrammarError:
        return False
    return True


def valid_digest(value: object) -> bool:
    """True for ``sha256:<64 lowercase hex>``."""
    return _valid(check_digest, value)


def valid_repository(value: object) -> bool:
    """True for a repository path distribution accepts."""
    return _valid(check_repository, value)


def valid_tag(value: object) -> bool:
    """True for a tag distribution accepts."""
    return _valid(check_tag, value)


def valid_host(value: object) -> bool:
    """True for a registry ``host[:port]``."""
    return _valid(check_host, value)
