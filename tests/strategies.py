"""Hypothesis strategies for the reference grammar (distribution/reference ``regexp.go``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

UNSAFE = ["\n", "\r", "\x00", "\x1b", "\u202e", "\u2066", "\u200f", "\u2028", "\x85"]
"""Newline, CR, NUL, ESC, right-to-left override, isolate, RLM, line separator, NEL."""

_alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
path_components = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=2),
)
repositories = st.lists(path_components, min_size=1, max_size=4).map("/".join)
_domain_component = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts)))
hosts = st.one_of(
    st.lists(_domain_component, min_size=2, max_size=4).map(".".join),
    st.just("localhost"),
    _ipv4,
    st.just("[::1]"),
)
hosts_with_port = st.builds(
    lambda host, port: f"{host}:{port}" if port else host,
    hosts,
    st.one_of(st.none(), st.integers(1, 65535)),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.binary(min_size=32, max_size=32).map(lambda raw: "sha256:" + raw.hex())
unsafe = st.sampled_from(UNSAFE)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)


def inject(value: str, char: str, position: int) -> str:
    """``value`` with ``char`` inserted at ``position`` (clamped)."""
    position = min(position, len(value))
    return value[:position] + char + value[position:]
