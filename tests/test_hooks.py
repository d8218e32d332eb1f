"""Webhook adapters for other registries' formats (payload shapes from their primary sources)."""

from __future__ import annotations

import json

import pytest

from registry_hooks import ADAPTERS, HookError
from registry_hooks.github import github_signature

DIGEST = "sha256:" + "3d" * 32


def test_github_signature_matches_githubs_documented_test_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature("It's a Secret to Everybody", b"Hello, World!") == expected


def github_payload(package_type: str = "CONTAINER") -> bytes:
    return json.dumps(
        {
            "action": "published",
            "registry_package": {
                "name": "hello-world",
                "package_type": package_type,
                "package_version": {
                    "id": 57755791,
                    "version": DIGEST,
                    "container_metadata": {
                        "tag": {"name": "v1", "digest": DIGEST},
                        "manifest": {"media_type": "application/vnd.oci.image.manifest.v1+json"},
                    },
                    "package_url": "ghcr.io/Codertocat/hello-world:v1",
                },
            },
        }
    ).encode()


def test_github_adapter_authenticates_the_raw_body_and_names_the_image() -> None:
    adapter = ADAPTERS["github"]
    body = github_payload()
    good = {"x-hub-signature-256": github_signature("s3cret-token-value", body)}
    assert adapter.authenticate(good, body, "s3cret-token-value")
    assert not adapter.authenticate(good, body + b" ", "s3cret-token-value")
    assert not adapter.authenticate({}, body, "s3cret-token-value")
    (event,) = adapter.parse(body, "application/json")
    assert (event.registry, event.repository, event.tag, event.digest) == (
        "ghcr.io",
        "codertocat/hello-world",
        "v1",
        DIGEST,
    )
    assert event.job_kind == "image"
    assert adapter.parse(github_payload("npm"), "application/json") == []


def harbor_payload(kind: str = "default") -> bytes:
    data = {
        "resources": [
            {"digest": DIGEST, "tag": "v1", "resource_url": "harbor.example.com/library/app:v1"}
        ],
        "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app"},
    }
    if kind == "cloudevents":
        return json.dumps({"type": "harbor.artifact.pushed", "id": "ce-1", "data": data}).encode()
    return json.dumps({"type": "PUSH_ARTIFACT", "occur_at": 1, "event_data": data}).encode()


@pytest.mark.parametrize("kind", ["default", "cloudevents"])
def test_harbor_adapter_reads_both_formats(kind: str) -> None:
    (event,) = ADAPTERS["harbor"].parse(harbor_payload(kind), "application/json")
    assert (event.registry, event.repository, event.tag, event.digest) == (
        "harbor.example.com",
        "library/app",
        "v1",
        DIGEST,
    )
    assert event.job_kind == "manifest"  # Harbor does not say whether it is an index


def test_harbor_ignores_other_event_types_and_rejects_bad_resources() -> None:
    adapter = ADAPTERS["harbor"]
    assert adapter.parse(b'{"type": "PULL_ARTIFACT", "event_data": {}}', None) == []
    with pytest.raises(HookError, match="resources"):
        adapter.parse(b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": 1}}', None)
    bad = harbor_payload().replace(DIGEST.encode(), b"sha256:nothex")
    with pytest.raises(HookError, match="digest"):
        adapter.parse(bad, None)


def test_acr_adapter_reads_a_single_event_object() -> None:
    body = json.dumps(
        {
            "id": "acr-1",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                "digest": DIGEST,
                "repository": "team/app",
                "tag": "v2",
            },
            "request": {"host": "myregistry.azurecr.io"},
        }
    ).encode()
    (event,) = ADAPTERS["acr"].parse(body, "application/json")
    assert (event.registry, event.repository, event.job_kind) == (
        "myregistry.azurecr.io",
        "team/app",
        "index",
    )


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("body", [b"", b"[]", b"\xff\xfe", b'{"type": 3, "action": []}', b"null"])
def test_every_adapter_turns_garbage_into_a_clear_error_or_nothing(name: str, body: bytes) -> None:
    try:
        assert ADAPTERS[name].parse(body, "application/json") == []
    except HookError as exc:
        assert str(exc)
