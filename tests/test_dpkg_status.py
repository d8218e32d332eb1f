"""Our dpkg status reader reads every status file as python-debian's deb822 parser does."""

from __future__ import annotations

from debian.deb822 import Deb822
from hypothesis import given, settings
from hypothesis import strategies as st

from sbom.catalogers.dpkg import _paragraphs

LINES = st.sampled_from(
    [
        "Package: a",
        "package: b",
        "Version: 1:2.3-4",
        "Status: install ok installed",
        "Depends: a | b, c (>= 1)",
        "Key:",
        "Key :  v  ",
        "A:B:C",
        ":x",
        " x: y",
        "  continued",
        "a b: c",
        "Üml: ä",
        "k\u3000: v",
        "x",
        "",
        " ",
        "\t",
        "\xa0",
        "   \xa0",
        "\u3000",
        "# a comment",
        "-----BEGIN PGP SIGNED MESSAGE-----",
        "-----BEGIN PGP SIGNATURE-----",
        "-----END PGP SIGNATURE-----",
        "- dash",
    ]
)


def deb822(lines: list[str]) -> list[dict[str, str]]:
    stanzas = Deb822.iter_paragraphs(lines, use_apt_pkg=False)
    return [{key.lower(): str(value) for key, value in s.items()} for s in stanzas]


@settings(max_examples=3000, deadline=None)
@given(st.lists(LINES, max_size=14))
def test_stanzas_equal_deb822s(lines: list[str]) -> None:
    assert list(_paragraphs(lines)) == deb822(lines)
