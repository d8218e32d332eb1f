"""Our SBOM documents (CycloneDX 1.6 JSON/XML, SPDX 2.3), the per-layer cache, the pipeline stage
and the ``supplychain sbom`` command, on the real test images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from cyclonedx.validation.xml import XmlValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from sbom import ImageInfo, LayerInput, SbomResult, generate_sbom, render
from sbom.cache import LayerCache
from sbom.interface import CATALOGERS
from supplychain.cli.sbom import add_parser
from supplychain.interface import ImageTarget, Layer, PulledImage
from supplychain.stages.cataloger import OwnCataloger
from tests.support.images import (
    app_layout,
    docker_archive,
    layer_paths,
    layout_digest,
    push,
    tiny_layout,
)
from tests.support.registry import Registry

TAG = "app-deleted"


def layers_of(layout: Path, tag: str) -> list[LayerInput]:
    return [LayerInput(f"sha256:{p.name}", p) for p in layer_paths(layout, tag)]


def info(tag: str) -> ImageInfo:
    return ImageInfo(
        "127.0.0.1:5000/team/app", layout_digest(app_layout(), tag), tag, "127.0.0.1:5000/team/app"
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> SbomResult:
    cache = tmp_path_factory.mktemp("cache")
    return generate_sbom(layers_of(app_layout(), TAG), info(TAG), cache)


def test_cyclonedx_json_is_valid_and_says_what_users_look_for(result: SbomResult) -> None:
    text = render(result, "cyclonedx-json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom: dict[str, Any] = json.loads(text)
    assert bom["specVersion"] == "1.6"
    image = bom["metadata"]["component"]
    assert image["type"] == "container"
    purl = PackageURL.from_string(image["purl"])
    assert (purl.type, purl.name, purl.version) == ("oci", "app", info(TAG).digest)
    assert purl.qualifiers == {"repository_url": "127.0.0.1:5000/team/app", "tag": TAG}
    assert [t["name"] for t in bom["metadata"]["tools"]["components"]] == ["supplychain"]
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    osc = [c for c in bom["components"] if c["type"] == "operating-system"]
    assert result.os_info is not None
    assert [(c["name"], c["version"]) for c in osc] == [("debian", result.os_info.version)]
    requests = next(c for c in bom["components"] if c["name"] == "requests")
    props = {p["name"]: p["value"] for p in requests["properties"]}
    assert props["supplychain:path"].endswith("requests-2.19.0.dist-info/METADATA")
    assert props["supplychain:layer_digest"] == result.layers[1]
    assert requests["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    adduser = next(r for r in by_ref if r.startswith("pkg:deb/debian/adduser@"))
    assert any(r.startswith("pkg:deb/debian/passwd@") for r in deps[adduser])
    assert any(r.startswith("pkg:pypi/urllib3@") for r in deps[requests["bom-ref"]])
    bash = next(c for c in bom["components"] if c["name"] == "bash")
    assert {"id": "GPL-3.0-or-later"} in [x["license"] for x in bash["licenses"]]


def test_cyclonedx_xml_is_valid(result: SbomResult) -> None:
    text = render(result, "cyclonedx-xml").decode()
    assert XmlValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert "pkg:pypi/requests@2.19.0" in text and "http://cyclonedx.org/schema/bom/1.6" in text


def test_spdx_json_is_valid_spdx_2_3(result: SbomResult) -> None:
    raw = json.loads(render(result, "spdx-json"))
    document = JsonLikeDictParser().parse(raw)  # type: ignore[no-untyped-call]
    assert validate_full_spdx_document(document, "SPDX-2.3") == []
    purls = {ref.locator for package in document.packages for ref in package.external_references}
    assert {p.purl() for p in result.packages} < purls


def test_second_image_on_a_known_base_reads_only_its_new_layers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = generate_sbom(layers_of(app_layout(), "app"), info("app"), cache)
    assert first.cached_layers == 0
    second = generate_sbom(layers_of(app_layout(), TAG), info(TAG), cache)
    assert second.cached_layers == 2  # base and pip/npm layers: only the deleting layer is read
    fresh = generate_sbom(layers_of(app_layout(), TAG), info(TAG), None)
    assert second.packages == fresh.packages
    # a damaged cache entry is a miss, never a wrong answer
    entry = LayerCache(cache, CATALOGERS.values())._file(second.layers[0])
    entry.write_bytes(b"{broken")
    again = generate_sbom(layers_of(app_layout(), TAG), info(TAG), cache)
    assert again.cached_layers == 2 and again.packages == fresh.packages


def test_own_cataloger_stage(tmp_path: Path) -> None:
    layout = app_layout()
    digest = layout_digest(layout, TAG)
    layers = tuple(
        Layer(
            f"sha256:{p.name}", "application/vnd.oci.image.layer.v1.tar+gzip", p.stat().st_size, p
        )
        for p in layer_paths(layout, TAG)
    )
    image = PulledImage(
        ImageTarget("127.0.0.1:5000", "team/app", digest, TAG),
        "application/vnd.oci.image.manifest.v1+json",
        b"{}",
        b"{}",
        "linux/amd64",
        layers,
        layout,
    )
    sbom = OwnCataloger(tmp_path / "cache").catalog(image)
    assert sbom.format == "cyclonedx-json" and sbom.generator.startswith("supplychain ")
    by_name = {c.name: c for c in sbom.components}
    assert by_name["lodash"].purl == "pkg:npm/lodash@4.17.15"
    assert by_name["lodash"].path == "app/node_modules/lodash/package.json"
    assert by_name["lodash"].layer_digest == layers[1].digest
    assert json.loads(sbom.document)["metadata"]["component"]["name"] == "127.0.0.1:5000/team/app"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sbom", *argv])
    code: int = args.func(args)
    return code


def purls_in(path: Path) -> set[str]:
    return {c["purl"] for c in json.loads(path.read_text())["components"] if "purl" in c}


def test_cli_reads_oci_layouts_docker_archives_and_registries(tmp_path: Path) -> None:
    tiny = tiny_layout()
    expected = {"pkg:pypi/urllib3@1.23"}
    out = tmp_path / "oci.json"
    assert run_cli(f"oci:{tiny}:tiny", "-o", str(out), "--cache-dir", str(tmp_path / "c")) == 0
    assert purls_in(out) == expected
    archive = docker_archive(tiny, "tiny", tmp_path / "tiny.tar", "tiny:1")
    out = tmp_path / "archive.json"
    assert (
        run_cli(f"docker-archive:{archive}", "-o", str(out), "--cache-dir", str(tmp_path / "c"))
        == 0
    )
    assert purls_in(out) == expected
    with Registry(tmp_path / "registry") as registry:
        digest = push(tiny, "tiny", f"{registry.host}/team/tiny:v1")
        for ref in (f"{registry.host}/team/tiny:v1", f"{registry.host}/team/tiny@{digest}"):
            out = tmp_path / "registry.xml"
            code = run_cli(
                ref, "-o", str(out), "--format", "cyclonedx-xml", "--cache-dir", str(tmp_path / "c")
            )
            assert code == 0 and "pkg:pypi/urllib3@1.23" in out.read_text()
            assert digest.split(":")[1] in out.read_text()


def test_cli_fails_cleanly_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(f"oci:{tmp_path}:nope", "--cache-dir", str(tmp_path / "c")) == 2
    assert "supplychain sbom:" in capsys.readouterr().err
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    assert run_cli(f"docker-archive:{bad}", "--cache-dir", str(tmp_path / "c")) == 2


def _normalised(document: dict[str, Any]) -> dict[str, Any]:
    def component(item: dict[str, Any]) -> tuple[Any, ...]:
        return (
            item["type"],
            item["name"],
            item.get("group"),
            item.get("version"),
            item.get("purl"),
            item.get("description"),
            frozenset(json.dumps(x, sort_keys=True) for x in item.get("licenses", [])),
            frozenset((p["name"], p["value"]) for p in item.get("properties", [])),
        )

    return {
        "image": component(document["metadata"]["component"]),
        "tools": [(t["name"], t["version"]) for t in document["metadata"]["tools"]["components"]],
        "components": {c["bom-ref"]: component(c) for c in document["components"]},
        "dependencies": {
            d["ref"]: frozenset(d.get("dependsOn", []))
            for d in document["dependencies"]
            if d.get("dependsOn")
        },
    }


def test_direct_json_writer_says_exactly_what_the_cyclonedx_library_says(
    result: SbomResult,
) -> None:
    """JSON is written without the library's model layer (for speed); it must not drift."""
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat

    from sbom.cyclonedx import to_bom, to_json

    library = make_outputter(to_bom(result), OutputFormat.JSON, SchemaVersion.V1_6)
    expected = _normalised(json.loads(library.output_as_string()))
    ours = _normalised(to_json(result))
    assert len(ours["components"]) > 90
    assert ours == expected


def test_the_sbom_names_the_installed_version() -> None:
    """The writers read ``supplychain.__version__``, which the distribution's version is built
    from (pyproject's dynamic version): both say the same."""
    from importlib.metadata import version

    from sbom.cyclonedx import tool_version

    assert tool_version() == version("supplychain")
