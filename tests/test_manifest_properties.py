"""Property tests of image manifest and index parsing: hostile JSON → RegistryError, no crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supplychain.mediatypes import OCI_INDEX, OCI_MANIFEST
from supplychain.registry.errors import RegistryError
from supplychain.registry.index import MAX_INDEX_ENTRIES, IndexEntry, parse_index
from supplychain.stages.source import image_manifest
from tests.strategies import digests, inject, json_values, unsafe

SETTINGS = settings(max_examples=150, deadline=None)


def platform_manifests(data: bytes) -> tuple[IndexEntry, ...]:
    return parse_index(data, max_entries=MAX_INDEX_ENTRIES)


LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
words = st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)


def descriptor(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


@SETTINGS
@given(document=json_values)
def test_arbitrary_json_index_is_a_list_or_a_registry_error(document: Any) -> None:
    try:
        found = platform_manifests(json.dumps(document).encode())
    except RegistryError as exc:
        assert str(exc)
    else:
        assert isinstance(found, tuple)


@SETTINGS
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_registry_error_or_parsed(body: bytes) -> None:
    for parse in (platform_manifests, lambda data: image_manifest(data, "x")):
        try:
            parse(body)
        except RegistryError as exc:
            assert str(exc)


@SETTINGS
@given(
    manifests=st.lists(st.tuples(digests, words, words, st.none() | words), max_size=6),
)
def test_generated_indexes_list_every_entry_as_a_platform_image(
    manifests: list[tuple[str, str, str, str | None]],
) -> None:
    entries = [
        descriptor(
            OCI_MANIFEST,
            digest,
            platform={"os": os, "architecture": arch, **({"variant": v} if v else {})},
        )
        for digest, os, arch, v in manifests
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    found = [
        (e.digest, e.media_type, e.platform, e.kind)
        for e in platform_manifests(json.dumps(index).encode())
    ]
    expected = [  # a runtime picks by platform: every image manifest entry is an image
        (digest, OCI_MANIFEST, "/".join([os, arch] + ([variant] if variant else [])), "image")
        for digest, os, arch, variant in manifests
    ]
    assert found == expected


@SETTINGS
@given(
    digest=digests,
    field=st.sampled_from(["os", "architecture", "variant"]),
    char=unsafe | st.just("/"),
    position=st.integers(0, 8),
)
def test_platform_names_with_control_bidi_or_slash_are_refused(
    digest: str, field: str, char: str, position: int
) -> None:
    platform = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    platform[field] = inject(platform[field], char, position)
    index = {"schemaVersion": 2, "manifests": [descriptor(OCI_MANIFEST, digest, platform=platform)]}
    with pytest.raises(RegistryError, match="not a platform name"):
        platform_manifests(json.dumps(index).encode())


@SETTINGS
@given(config=digests, layers=st.lists(digests, max_size=5), data=st.data(), junk=json_values)
def test_image_manifest_fields_replaced_with_junk_never_crash(
    config: str, layers: list[str], data: st.DataObject, junk: Any
) -> None:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, config),
        "layers": [descriptor(LAYER, digest) for digest in layers],
    }
    _, config_desc, layer_descs = image_manifest(json.dumps(manifest).encode(), "x")
    assert config_desc == (CONFIG, config, 10) and [d[1] for d in layer_descs] == layers
    key = data.draw(st.sampled_from(sorted(manifest)))
    manifest[key] = junk
    try:
        image_manifest(json.dumps(manifest).encode(), "x")
    except RegistryError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "duplicate key"),
        (b'{"schemaVersion": NaN}', "NaN is not JSON"),
    ],
)
def test_deep_duplicate_and_non_finite_json_are_clear_errors(body: bytes, why: str) -> None:
    with pytest.raises(RegistryError, match=why):
        image_manifest(body, "x")
    with pytest.raises(RegistryError, match=why):
        platform_manifests(body)
