"""Licence names as packages state them, turned into SPDX identifiers or expressions.

:func:`spdx` accepts what package metadata writes: SPDX expressions (``(Apache-2.0 OR MIT) AND
MPL-2.0``, checked and case-normalised against the licence list of ``license-expression``:
:mod:`sbom._expression`), Fedora's legacy
names (``GPLv2+ and LGPLv2+``, ``ASL 2.0``), Debian's DEP-5 short names (``GPL-2+``,
``Expat``, ``Artistic``), PyPI classifier names and the usual spellings (``Apache License
2.0``, ``The MIT License``). Each operand is mapped on its own, and the result is checked as a
whole: when any part is not a licence SPDX knows, the stated text is kept as it was (whitespace
folded), so consumers see what the package says rather than a guess.

:func:`dep5_expression` reads the ``License:`` synopsis of a Debian machine-readable copyright
file, whose commas bind looser than ``and``/``or`` (``GPL-1+ or Artistic, and BSD``).
"""

from __future__ import annotations

import functools
import json
import re

from sbom._expression import normalize, prepare

__all__ = [
    "cyclonedx_expression",
    "cyclonedx_id",
    "dep5_expression",
    "is_spdx",
    "prepare",
    "spdx",
    "spdx_all",
]

_ALIASES = {
    "artistic": "Artistic-1.0-Perl",
    "perl": "Artistic-1.0-Perl OR GPL-1.0-or-later",
    "expat": "MIT",
    "mit license": "MIT",
    "mit/x11": "MIT",
    "x11": "X11",
    "bsd": "BSD-3-Clause",
    "bsd license": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "simplified bsd": "BSD-2-Clause",
    "asl 2.0": "Apache-2.0",
    "apache": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "apache software": "Apache-2.0",
    "apache license": "Apache-2.0",
    "psf": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
    "python software foundation": "PSF-2.0",
    "psfl": "PSF-2.0",
    "zlib/libpng": "Zlib",
    "boost": "BSL-1.0",
    "boost software license": "BSL-1.0",
    "isc license (iscl)": "ISC",
    "iscl": "ISC",
    # unversioned GNU licences mean "any version" (Trivy maps them the same way)
    "lgpl": "LGPL-2.0-or-later",
    "gnu lgpl": "LGPL-2.0-or-later",
    "gnu lesser general public": "LGPL-2.0-or-later",
    "gnu library or lesser general public license (lgpl)": "LGPL-2.0-or-later",
    "gnu library or lesser general public": "LGPL-2.0-or-later",
    "gnu general public license (gpl)": "GPL-1.0-or-later",
    "gnu general public": "GPL-1.0-or-later",
    "gnu gpl": "GPL-1.0-or-later",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "openssl": "OpenSSL",
    "sleepycat": "Sleepycat",
    "vim": "Vim",
    "unlicense": "Unlicense",
    "the unlicense (unlicense)": "Unlicense",
    "cc0": "CC0-1.0",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "eclipse public license 1.0": "EPL-1.0",
    "eclipse public license 2.0": "EPL-2.0",
    "eclipse public license - v 2.0": "EPL-2.0",
    "eclipse public license - v 1.0": "EPL-1.0",
    "cddl 1.1": "CDDL-1.1",
    "gpl2 w/ cpe": "GPL-2.0-only WITH Classpath-exception-2.0",
    "gnu general public license, version 2 with the classpath exception": (
        "GPL-2.0-only WITH Classpath-exception-2.0"
    ),
}
# GNU families: GPLv2+, GPL-2+, GPL2, LGPL-2.1+, "GNU General Public License v3 or later (GPLv3+)"…
_GNU = re.compile(
    r"(?:gnu )?(?P<family>a|l|affero |lesser |library )?(?:gpl|general public license)"
    r"[ -]?(?:v|version |v\. ?)?(?P<version>[123](?:\.[01])?)(?:\.0)?"
    r"(?P<later>\+| or later| or any later version|-or-later| or newer)?(?:-only| only)?"
)
_GFDL = re.compile(
    r"gfdl(?P<niv>-niv)?[ -]?v?(?P<version>1\.[123])(?P<later>\+|-or-later)?(?:-only)?"
)
# "<licence> with <name> exception", as Debian writes it: the SPDX exception ids of the usual ones
_WITH = re.compile(r"(?P<license>.+?) with (?P<name>[\w.-]+(?: [\w.-]+)?) exceptions?")
_EXCEPTIONS = {
    "bison": "Bison-exception-2.2",
    "autoconf": "Autoconf-exception-generic",
    "autoconf-data": "Autoconf-exception-generic",
    "texinfo": "Texinfo-exception",
    "gcc": "GCC-exception-3.1",
    "gcc runtime library": "GCC-exception-3.1",
    "classpath": "Classpath-exception-2.0",
    "font": "Font-exception-2.0",
    "openssl": "OpenSSL-exception",
    "libtool": "Libtool-exception",
    "linking": "Linking-exception",
}
_APACHE = re.compile(r"(?:the )?apache(?: software)?(?: license)?,?[ -]?(?:v|version )?2(?:\.0)?")
_MPL = re.compile(r"(?:mozilla public license|mpl)[ -]?v?(?P<version>1\.[01]|2\.0|2)")
_OPERATOR = re.compile(r"\s+(and|or|with)\s+|\s*([()])\s*", re.IGNORECASE)
_DEP5_COMMA = re.compile(r",\s*(and|or)\s+", re.IGNORECASE)
_TRAILING = " \t,;."
_SPDX_CHARS = re.compile(r"[A-Za-z0-9.+() -]+")
_PARENTHESISED = re.compile(r"\s*\([^()]*\)$")


# Licence URLs packages give instead of a name (Maven <url>, OSGi Bundle-License), by host+path
_URLS = {
    "www.apache.org/licenses/license-2.0": "Apache-2.0",
    "apache.org/licenses/license-2.0": "Apache-2.0",
    "opensource.org/licenses/mit": "MIT",
    "opensource.org/licenses/mit-license": "MIT",
    "opensource.org/licenses/bsd-license": "BSD-2-Clause",
    "opensource.org/licenses/bsd-3-clause": "BSD-3-Clause",
    "www.eclipse.org/legal/epl-v10": "EPL-1.0",
    "www.eclipse.org/legal/epl-2.0": "EPL-2.0",
    "www.eclipse.org/org/documents/edl-v10": "BSD-3-Clause",
    "www.gnu.org/licenses/lgpl": "LGPL-3.0-only",
    "www.gnu.org/licenses/old-licenses/lgpl-2.1": "LGPL-2.1-only",
    "www.gnu.org/licenses/old-licenses/gpl-2.0": "GPL-2.0-only",
    "www.gnu.org/licenses/gpl-3.0": "GPL-3.0-only",
    "www.mozilla.org/mpl/2.0": "MPL-2.0",
}
_URL = re.compile(r"https?://([^?#]+?)(?:\.txt|\.html?|\.php)?/?")


def _gnu(match: re.Match[str]) -> str:
    family = (match.group("family") or "").strip()
    prefix = {"": "GPL", "a": "AGPL", "affero": "AGPL"}.get(family, "LGPL")
    version = match.group("version")
    if "." not in version:
        version = "2.0" if prefix == "LGPL" and version == "2" else f"{version}.0"
    if prefix == "LGPL" and version == "1.0":
        return ""
    return f"{prefix}-{version}-{'or-later' if match.group('later') else 'only'}"


def _operand(text: str) -> str:
    """One licence name as an SPDX id (or small expression), or '' when unknown."""
    key = " ".join(text.lower().split()).strip(_TRAILING)
    key = key.removeprefix("the ").removesuffix(" license").removesuffix(" licence")
    if key in _ALIASES:
        return _ALIASES[key]
    if (match := _URL.fullmatch(key)) is not None:
        return _URLS.get(match.group(1), "")
    if (match := _GNU.fullmatch(key)) is not None:
        return _gnu(match)
    if (match := _GFDL.fullmatch(key)) is not None:
        later = "or-later" if match.group("later") else "only"
        niv = "-no-invariants" if match.group("niv") else ""
        return f"GFDL-{match.group('version')}{niv}-{later}"
    if (match := _WITH.fullmatch(key)) is not None:
        base, exception = _operand(match.group("license")), _EXCEPTIONS.get(match.group("name"))
        return f"{base} WITH {exception}" if base and " " not in base and exception else ""
    if _APACHE.fullmatch(key):
        return "Apache-2.0"
    if (match := _MPL.fullmatch(key)) is not None:
        version = match.group("version")
        return f"MPL-{version if '.' in version else version + '.0'}"
    if re.fullmatch(r"[\w.+-]+", key) and (found := normalize(key)) is not None:
        return found
    return ""


@functools.lru_cache(maxsize=4096)
def spdx(text: str) -> str:
    """``text`` as an SPDX identifier or expression, or as stated (whitespace folded) when it
    is not one SPDX can express."""
    stated = " ".join(text.split()).strip(" ,;")
    if not stated:
        return ""
    if (found := normalize(stated)) is not None and "LicenseRef" not in found:
        return found
    for name in (stated, _PARENTHESISED.sub("", stated)):  # "ISC License (ISCL)"
        if (operand := _operand(name)) and (found := normalize(operand)) is not None:
            return found
    parts: list[str] = []
    for index, piece in enumerate(_OPERATOR.split(stated)):
        if piece is None or not piece.strip():
            continue
        if index % 3 == 1:
            parts.append(f" {piece.upper()} ")  # and / or / with
        elif index % 3 == 2:
            parts.append(piece)  # a parenthesis
        else:
            operand = _operand(piece)
            if not operand:
                return stated
            parts.append(f"({operand})" if " " in operand else operand)
    return normalize("".join(parts)) or stated


def spdx_all(texts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """:func:`spdx` of each text, empty ones dropped, duplicates removed (first one kept)."""
    return tuple(dict.fromkeys(found for text in texts if (found := spdx(text))))


@functools.lru_cache(maxsize=4096)  # Debian images repeat a few dozen synopses ~1 000 times
def dep5_expression(synopsis: str) -> str:
    """A DEP-5 ``License:`` synopsis (its first line) as an SPDX expression where it can be:
    ``GPL-1+ or Artistic, and BSD-3-clause`` → ``(GPL-1.0-or-later OR Artistic-1.0-Perl) AND
    BSD-3-Clause``."""
    pieces = _DEP5_COMMA.split(synopsis.strip())
    if len(pieces) == 1:
        return spdx(synopsis)
    expression = ""
    for index in range(0, len(pieces), 2):
        part = spdx(pieces[index])
        if not normalize(part):
            return spdx(synopsis)
        part = f"({part})" if " " in part else part
        expression = part if not expression else f"{expression} {pieces[index - 1].upper()} {part}"
    return normalize(expression) or spdx(synopsis)


@functools.cache
def _cyclonedx_ids() -> dict[str, str]:
    """cyclonedx-python-lib's SPDX ids (its schema's enum), lower-cased → their spelling."""
    from cyclonedx.schema._res import SPDX_JSON  # the file cyclonedx.spdx reads

    with open(SPDX_JSON, encoding="utf-8") as schema:
        return {key.lower(): key for key in json.load(schema).get("enum", [])}


def cyclonedx_id(text: str) -> str | None:
    """``cyclonedx.spdx.fixup_id``: the id as cyclonedx-python-lib spells it, or None.

    This and :func:`cyclonedx_expression` are the library's two checks, made here because
    importing ``cyclonedx.spdx`` builds a license-expression licensing object (~0.04 s of a
    0.7 s ``supplychain sbom``), which :mod:`sbom._expression` does without."""
    return _cyclonedx_ids().get(text.lower())


def cyclonedx_expression(text: str) -> bool:
    """``cyclonedx.spdx.is_expression``: a valid expression of listed licences (the library
    asks license-expression, whose list :mod:`sbom._expression` reads; where that parser lets
    malformed text pass, e.g. ``MIT AND``, this says no)."""
    return normalize(text) is not None


def is_spdx(text: str) -> bool:
    """True when ``text`` is a valid SPDX identifier or expression of SPDX-listed licences
    (a ``LicenseRef-`` would have to be declared in the document that uses it)."""
    if not _SPDX_CHARS.fullmatch(text) or "licenseref" in text.lower():
        return False
    return normalize(text) is not None
