"""Licences as SPDX: each cataloger's stated licences, normalised, on real metadata where the
machine has it (Debian's copyright files, jars and Python packages), and in both documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sbom import generate_sbom, write_cyclonedx
from sbom.catalogers.apk import ApkCataloger
from sbom.catalogers.java import JavaArchiveCataloger
from sbom.catalogers.npm import NpmCataloger
from sbom.catalogers.python import PythonCataloger
from sbom.interface import FileEntry, LayerCataloger, Package
from sbom.licenses import dep5_expression, spdx
from sbom.local import oci_layout
from sbom.spdx import write_spdx
from tests.support.images import app_layout
from tests.test_sbom_catalogers_lang import zip_bytes


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ("(Apache-2.0 OR MIT) AND MPL-2.0", "(Apache-2.0 OR MIT) AND MPL-2.0"),
        ("mit", "MIT"),
        ("GPLv2+", "GPL-2.0-or-later"),  # Fedora's legacy names
        ("GPLv2+ and LGPLv2+", "GPL-2.0-or-later AND LGPL-2.0-or-later"),
        ("ASL 2.0", "Apache-2.0"),
        ("GPL-2+", "GPL-2.0-or-later"),  # DEP-5 short names
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("Expat", "MIT"),
        ("Zlib,", "Zlib"),
        ("GPL-3+ with Bison exception", "GPL-3.0-or-later WITH Bison-exception-2.2"),
        ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
        ("GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),  # PyPI classifiers
        ("ISC License (ISCL)", "ISC"),
        ("Apache License, Version 2.0", "Apache-2.0"),  # Maven
        ("https://www.apache.org/licenses/LICENSE-2.0.txt", "Apache-2.0"),
        ("GPL-2.0+", "GPL-2.0-or-later"),  # deprecated SPDX ids
        # not SPDX: kept as stated
        ("public-domain", "public-domain"),
        ("Public  Domain", "Public Domain"),
        ("BSD-like and LGPL", "BSD-like and LGPL"),
        ("GPLv2 with exceptions", "GPLv2 with exceptions"),
    ],
)
def test_stated_licences_become_spdx_or_stay_as_stated(stated: str, expected: str) -> None:
    assert spdx(stated) == expected


def test_dep5_commas_bind_looser_than_and_or() -> None:
    assert dep5_expression("GPL-1+ or Artistic, and BSD-3-clause") == (
        "(GPL-1.0-or-later OR Artistic-1.0-Perl) AND BSD-3-Clause"
    )
    assert dep5_expression("GPL-1+ or Artistic") == "GPL-1.0-or-later OR Artistic-1.0-Perl"
    assert dep5_expression("GPL-2+ or Frobnicate, and MIT") == "GPL-2+ or Frobnicate, and MIT"


def licences(cataloger: LayerCataloger, path: str, data: bytes) -> tuple[str, ...]:
    assert cataloger.wants(path)
    (package,) = cataloger.catalog([FileEntry(path, data)], None)[path]
    return package.licenses


def test_apk_keeps_an_expression_whole_and_splits_an_old_list() -> None:
    def apk(field: str) -> tuple[str, ...]:
        data = f"P:x\nV:1-r0\nL:{field}\n".encode()
        return licences(ApkCataloger(), "usr/lib/apk/db/installed", data)

    assert apk("(Apache-2.0 OR MIT) AND MPL-2.0") == ("(Apache-2.0 OR MIT) AND MPL-2.0",)
    assert apk("MIT BSD GPL2+") == ("MIT", "BSD-3-Clause", "GPL-2.0-or-later")
    assert apk("GPL-2.0-only") == ("GPL-2.0-only",)
    assert apk("MIT AND custom-licence") == ("MIT AND custom-licence",)


def test_npm_licence_forms() -> None:
    def npm(value: object, key: str = "license") -> tuple[str, ...]:
        data = json.dumps({"name": "x", "version": "1.0.0", key: value}).encode()
        return licences(NpmCataloger(), "app/package.json", data)

    assert npm("(MIT OR Apache-2.0)") == ("MIT OR Apache-2.0",)
    assert npm(["MIT", {"type": "ISC"}]) == ("MIT", "ISC")
    assert npm({"type": "BSD-3-Clause"}) == ("BSD-3-Clause",)
    assert npm([{"type": "MIT"}, {"type": "Apache 2.0"}], "licenses") == ("MIT", "Apache-2.0")


def test_python_precedence_expression_classifiers_field_then_file_names() -> None:
    def python(*lines: str) -> tuple[str, ...]:
        data = "\n".join(["Metadata-Version: 2.4", "Name: x", "Version: 1", *lines, ""])
        return licences(PythonCataloger(), "site/x-1.dist-info/METADATA", data.encode())

    classifier = "Classifier: License :: OSI Approved :: Apache Software License"
    assert python("License-Expression: MIT OR Apache-2.0", classifier) == ("MIT OR Apache-2.0",)
    assert python("License: Apache 2", classifier) == ("Apache-2.0",)
    assert python("License: BSD", "Classifier: License :: OSI Approved :: MIT License") == ("MIT",)
    assert python("License: Apache License 2.0") == ("Apache-2.0",)
    assert python("License-File: LICENSE", "License-File: LICENSES/MIT.txt") == ("MIT",)
    assert python("License: UNKNOWN", "License-File: COPYING") == ()


def test_java_licences_from_pom_xml_and_bundle_license() -> None:
    jars = {  # Debian's jars (.ci/run installs them)
        "jansi-2.4.0.jar": ("Apache-2.0",),  # pom.xml <licenses>
        "guava-31.1-jre.jar": ("Apache-2.0",),  # Bundle-License: a URL
        "commons-lang3-3.12.0.jar": (),  # neither: its licence is in the parent pom
    }
    for name, expected in jars.items():
        data = (Path("/usr/share/java") / name).read_bytes()
        assert licences(JavaArchiveCataloger(), f"srv/{name}", data) == expected, name
    bomb = b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">'
    bomb += b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><project>&b;</project>'
    hostile = zip_bytes(
        {
            "META-INF/maven/g/a/pom.properties": b"groupId=g\nartifactId=a\nversion=1\n",
            "META-INF/maven/g/a/pom.xml": bomb,
        }
    )
    (package,) = JavaArchiveCataloger().catalog([FileEntry("srv/a.jar", hostile)], None)[
        "srv/a.jar"
    ]
    assert package.purl() == "pkg:maven/g/a@1" and package.licenses == ()


@pytest.fixture(scope="module")
def debian() -> list[Package]:
    layout = app_layout()
    layers, info = oci_layout(layout, "app")
    return list(generate_sbom(layers, info, None).packages)


def test_debian_copyright_files_by_dep5(debian: list[Package]) -> None:
    by_name = {p.name: p for p in debian if p.type == "deb"}
    assert by_name["zlib1g"].licenses == ("Zlib",)
    assert "GPL-1.0-or-later OR Artistic-1.0-Perl" in by_name["libdb5.3"].licenses
    assert "GPL-3.0-or-later WITH Bison-exception-2.2" in by_name["bash"].licenses
    assert "GPL-2.0-or-later OR LGPL-3.0-or-later" in by_name["libgmp10"].licenses
    for package in by_name.values():
        for text in package.licenses:
            assert not text.endswith(","), (package.name, text)


def _cdx_licences(document: dict[str, Any], name: str) -> list[Any]:
    (component,) = [c for c in document["components"] if c["name"] == name]
    licenses: list[Any] = component["licenses"]
    return licenses


def test_cyclonedx_and_spdx_carry_the_licences(tmp_path: Path) -> None:
    layout = app_layout()
    layers, info = oci_layout(layout, "app")
    result = generate_sbom(layers, info, None)
    cdx = json.loads(write_cyclonedx(result))
    assert _cdx_licences(cdx, "zlib1g") == [{"license": {"id": "Zlib"}}]
    (expression,) = _cdx_licences(cdx, "libgmp10")
    assert "GPL-2.0-or-later OR LGPL-3.0-or-later" in expression["expression"]
    spdx_doc = json.loads(write_spdx(result))
    declared = {p["name"]: p.get("licenseDeclared") for p in spdx_doc["packages"]}
    assert declared["zlib1g"] == "Zlib"
    assert "(GPL-2.0-or-later OR LGPL-3.0-or-later)" in declared["libgmp10"]


@pytest.mark.parametrize(
    "text",
    [
        "MIT",
        "mit",
        "GPL-2.0+",
        "GPL-2.0-or-later",
        "MIT OR Apache-2.0",
        "BSD-3-Clause AND GPL-2.0-only WITH Classpath-exception-2.0",
        "(MIT",
        "MIT and BSD",
        "LicenseRef-foo",
        "Ünïcode",
        "MIT AND",
    ],
)
def test_our_cyclonedx_licence_checks_are_the_librarys(text: str) -> None:
    """CycloneDX JSON picks id / expression / name with cyclonedx-python-lib's two checks,
    re-made in sbom.licenses so that JSON does not import cyclonedx.spdx."""
    import cyclonedx.spdx

    from sbom.licenses import cyclonedx_expression, cyclonedx_id

    assert cyclonedx_id(text) == cyclonedx.spdx.fixup_id(text)
    assert cyclonedx_expression(text) == cyclonedx.spdx.is_expression(text)


def test_an_empty_licence_is_no_expression_though_the_library_says_it_is() -> None:
    """cyclonedx-python-lib calls "" a valid expression (license-expression finds no error in
    nothing): a package stating an empty licence would get ``{"expression": ""}``."""
    import cyclonedx.spdx

    from sbom.licenses import cyclonedx_expression

    assert cyclonedx.spdx.is_expression("")
    assert not cyclonedx_expression("")
