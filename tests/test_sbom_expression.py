"""SPDX expressions: ``sbom._expression`` checks and writes them as ``license-expression``
does, on generated expressions and on every licence the test image states."""

from __future__ import annotations

import functools
import random

import pytest
from license_expression import get_license_index, get_spdx_licensing

from sbom import generate_sbom
from sbom._expression import normalize
from sbom.local import oci_layout
from tests.support.images import app_layout

_licensing = functools.cache(get_spdx_licensing)


def _library(text: str) -> str | None:
    try:
        info = _licensing().validate(text)
    except Exception:  # its parser raises on some malformed text
        return None
    if info.errors or not info.normalized_expression:
        return None
    return str(info.normalized_expression)


class _Generator:
    """Well-formed expressions of listed ids, aliases, exceptions (in and out of ``WITH``)
    and unknown names, in mixed case and spacing, nested up to three levels."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)  # noqa: S311 (test data, seeded to repeat)
        index = [e for e in get_license_index() if e.get("spdx_license_key")]
        self.licences = [e["spdx_license_key"] for e in index if not e.get("is_exception")]
        self.exceptions = [e["spdx_license_key"] for e in index if e.get("is_exception")]
        self.aliases = [a for e in index for a in e.get("other_spdx_license_keys") or ()]

    def _case(self, word: str) -> str:
        pick = self.rnd.random()
        return word.lower() if pick < 0.2 else word.upper() if pick < 0.3 else word

    def _atom(self) -> str:
        pick, rnd = self.rnd.random(), self.rnd
        if pick < 0.55:
            return self._case(rnd.choice(self.licences))
        if pick < 0.65:
            return self._case(rnd.choice(self.aliases))
        if pick < 0.72:
            return self._case(rnd.choice(self.exceptions))
        if pick < 0.78:
            return rnd.choice(["Foo", "MIT+", "GPL-2+", "BSD-like", "LicenseRef-x", "X11/MIT"])
        right = rnd.choice(self.exceptions + self.licences[:5])
        return f"{self._case(rnd.choice(self.licences))} {self._case('WITH')} {right}"

    def expression(self, depth: int = 0) -> str:
        if depth > 2 or self.rnd.random() < 0.35:
            return self._atom()
        parts = [self.expression(depth + 1) for _ in range(self.rnd.randint(2, 4))]
        text = parts[0]
        for part in parts[1:]:
            text += f" {self._case(self.rnd.choice(['AND', 'OR']))} {part}"
        text = f"({text})" if self.rnd.random() < 0.4 else text
        return text.replace(" ", "\n ") if self.rnd.random() < 0.05 else text


@pytest.mark.parametrize("seed", range(5))
def test_generated_expressions_come_out_as_the_library_writes_them(seed: int) -> None:
    generator = _Generator(seed)
    texts = [generator.expression() for _ in range(300)]
    assert sum(_library(t) is not None for t in texts) > 20  # valid ones among them
    assert [normalize(t) for t in texts] == [_library(t) for t in texts]


@pytest.mark.parametrize(
    "text",
    [
        "GPL 2.0 OR mit",  # a multi-word alias: the library's own parse
        "MIT AND (BSD-2-Clause AND ISC)",  # a nested group keeps its parentheses
        "((MIT))",
        "mit or isc and zlib or bsd-2-clause",
        "GPL-2.0-only WITH Classpath-exception-2.0 WITH Bison-exception-2.2",
        "(GPL-2.0-only) WITH Classpath-exception-2.0",
        "Classpath-exception-2.0",
        "MIT ISC",
        "AND MIT",
    ],
)
def test_edge_cases_agree_with_the_library(text: str) -> None:
    assert normalize(text) == _library(text)


@pytest.mark.parametrize("text", ["MIT AND", "MIT/X11", "()", "(MIT", "MIT)", ""])
def test_malformed_text_is_no_expression(text: str) -> None:
    """Where the library's parser raises or lets a dangling operator pass, this says None."""
    assert normalize(text) is None


def test_every_licence_the_test_image_states_agrees_with_the_library() -> None:
    layers, info = oci_layout(app_layout(), "app")
    stated = {text for p in generate_sbom(layers, info).packages for text in p.licenses}
    assert len(stated) > 20
    assert {t: normalize(t) for t in stated} == {t: _library(t) for t in stated}


def test_hostile_text_is_no_expression_and_raises_nothing() -> None:
    """Deep nesting (which would exhaust the parser's recursion) and megabytes of text are
    None, at once."""
    assert normalize("(" * 5000 + "MIT" + ")" * 5000) is None
    assert normalize("(" * 32 + "MIT" + ")" * 32) == "MIT"  # as deep as SPDX text goes
    assert normalize(" AND ".join(["MIT"] * 1_000_000)) is None
    assert normalize(" AND ".join(["MIT"] * 1000)) == " AND ".join(["MIT"] * 1000)
