"""Helpers the catalogers share: RFC 822-style stanzas and license name normalisation."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sbom.interface import OSInfo

__all__ = ["distro_qualifier", "normalise_license", "stanzas"]

_SPDX = {
    "gpl-1": "GPL-1.0-only",
    "gpl-1+": "GPL-1.0-or-later",
    "gpl-2": "GPL-2.0-only",
    "gpl-2+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only",
    "gpl-3+": "GPL-3.0-or-later",
    "lgpl-2": "LGPL-2.0-only",
    "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3": "LGPL-3.0-only",
    "lgpl-3+": "LGPL-3.0-or-later",
    "agpl-3": "AGPL-3.0-only",
    "agpl-3+": "AGPL-3.0-or-later",
    "apache-2": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "expat": "MIT",
    "mit": "MIT",
    "isc": "ISC",
    "zlib": "Zlib",
    "mpl-2.0": "MPL-2.0",
    "psf-2.0": "PSF-2.0",
    "python-2.0": "Python-2.0",
    "apache software license": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "mit license": "MIT",
    "bsd license": "BSD-3-Clause",
    "bsd": "BSD-3-Clause",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "mpl 2.0": "MPL-2.0",
    "lgpl": "LGPL-2.1-only",
}
_WORD = re.compile(r"[\w.+-]+")


def normalise_license(text: str) -> str:
    """An SPDX id for common spellings (``GPL-2+`` → ``GPL-2.0-or-later``), else the text."""
    name = " ".join(text.split())
    key = name.lower()
    return _SPDX.get(key) or _SPDX.get(key.replace(" ", "-").removesuffix("-license"), name)


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """Paragraphs of ``Key: value`` fields (continuation lines folded), as dpkg and DEP-5 use."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line.strip()
        else:
            name, colon, value = line.partition(":")
            if colon and _WORD.fullmatch(name):
                key = name
                fields[key] = value.strip()
            else:
                key = ""
    if fields:
        yield fields


def distro_qualifier(os_info: OSInfo | None) -> tuple[tuple[str, str], ...]:
    """``(("distro", "debian-12.10"),)`` or nothing when the OS is unknown."""
    if os_info is None or not os_info.version:
        return ()
    return (("distro", f"{os_info.family}-{os_info.version}"),)
