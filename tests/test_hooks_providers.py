"""Each adapter on its provider's documented example payloads (tests/data/hooks/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry_hooks import ADAPTERS, RESOLVE_DIGEST, HookError
from registry_hooks.github import github_signature

DATA = Path(__file__).parent / "data" / "hooks"
DIGEST = "sha256:" + "4e" * 32
HARBOR_DIGEST = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture(name))
    return loaded


@pytest.mark.parametrize(
    "name", ["harbor-push-by-digest.default.json", "harbor-push-by-digest.cloudevents.json"]
)
def test_harbor_push_by_digest_is_a_push_without_tag(name: str) -> None:
    delivery = ADAPTERS["harbor"].read({}, fixture(name))
    (event,) = delivery.events
    assert (event.action, event.registry, event.repository, event.digest, event.tag) == (
        "push",
        "localhost",
        "harbor/alpine",
        HARBOR_DIGEST,
        None,
    )
    assert event.actor == "harbor-jobservice"
    assert event.time is not None and event.time.year == 2023
    assert event.event_id  # default format: synthesised from time and digest


def test_harbor_tag_naming_another_digest_is_refused() -> None:
    payload = document("harbor-push-by-digest.default.json")
    payload["event_data"]["resources"][0]["tag"] = DIGEST
    with pytest.raises(HookError, match="tag is a digest other than"):
        ADAPTERS["harbor"].read({}, json.dumps(payload).encode())


def test_harbor_delete_is_a_deletion_and_pull_is_ignored_with_a_reason() -> None:
    (event,) = ADAPTERS["harbor"].read({}, fixture("harbor-delete.default.json")).events
    assert (event.action, event.repository, event.tag) == ("delete", "harbor/alpine", "3.8")
    assert ADAPTERS["harbor"].parse(fixture("harbor-delete.default.json"), None) == []
    pulled = ADAPTERS["harbor"].read({}, fixture("harbor-pull.default.json"))
    assert pulled.events == () and "PULL_ARTIFACT" in pulled.ignored[0]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("github-package-published-docker.json", "package"),
        ("github-registry-package-published-docker.json", "registry_package"),
    ],
)
def test_github_documented_examples_are_refused_or_ignored_with_a_reason(
    name: str, event: str
) -> None:
    adapter = ADAPTERS["github"]
    body = fixture(name)
    # As documented: package_type "npm" (the example is internally inconsistent).
    delivery = adapter.read({"x-github-event": event}, body)
    assert delivery.events == () and "'npm' is not a container image" in delivery.ignored[0]
    # Declared a container, its 40-hex container_metadata digests are refused, never trusted.
    payload = document(name)
    payload[event]["package_type"] = "CONTAINER"
    with pytest.raises(HookError, match="not a sha256 digest"):
        adapter.read({"x-github-event": event}, json.dumps(payload).encode())


@pytest.mark.parametrize("package_type", ["container", "CONTAINER", "docker", "Docker"])
@pytest.mark.parametrize("event", ["package", "registry_package"])
def test_github_container_and_migrated_docker_packages_become_pushes(
    package_type: str, event: str
) -> None:
    name = f"github-{event.replace('_', '-')}-published-docker.json"
    payload = document(name)
    version = payload[event]["package_version"]
    payload[event]["package_type"] = package_type
    version["container_metadata"]["tag"] = {"name": "v1", "digest": DIGEST}
    version["container_metadata"]["manifest"]["digest"] = DIGEST
    version["version"] = version["name"] = DIGEST
    body = json.dumps(payload).encode()
    headers = {"x-github-event": event, "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    delivery = ADAPTERS["github"].read(headers, body)
    (push,) = delivery.pushes
    assert (push.registry, push.repository, push.tag, push.digest) == (
        "ghcr.io",
        "codertocat/hello-world",
        "v1",
        DIGEST,
    )
    assert push.event_id == delivery.delivery_id == headers["x-github-delivery"]
    assert push.actor == "Codertocat" and push.job_kind == "image"
    signed = {"x-hub-signature-256": github_signature("s3cret-token-value", body)}
    assert ADAPTERS["github"].authenticate(signed, body, "s3cret-token-value")


def test_github_disagreeing_digests_and_other_events_say_why() -> None:
    payload = document("github-registry-package-published-docker.json")
    version = payload["registry_package"]["package_version"]
    payload["registry_package"]["package_type"] = "container"
    version["container_metadata"]["tag"]["digest"] = DIGEST
    version["container_metadata"]["manifest"]["digest"] = DIGEST
    with pytest.raises(HookError, match="different digests"):
        ADAPTERS["github"].read({}, json.dumps(payload).encode())
    ping = ADAPTERS["github"].read({"x-github-event": "ping"}, b'{"zen": "hi"}')
    assert ping.events == () and "'ping' is not a package event" in ping.ignored[0]


def test_dockerhub_push_names_a_tag_and_says_to_resolve_the_digest() -> None:
    delivery = ADAPTERS["dockerhub"].read({}, fixture("dockerhub-push.json"))
    (event,) = delivery.pushes
    assert (event.registry, event.repository, event.tag, event.digest) == (
        "docker.io",
        "svendowideit/testhook",
        "latest",
        None,
    )
    assert event.note == RESOLVE_DIGEST == "resolve the digest at the registry before use"
    assert event.actor == "trustedbuilder" and event.time is not None
    assert event.event_id == f"svendowideit/testhook:latest:{event.time.isoformat()}"


def test_quay_push_is_one_tag_only_event_per_tag_and_builds_are_ignored() -> None:
    (event,) = ADAPTERS["quay"].read({}, fixture("quay-repo-push.json")).pushes
    assert (event.registry, event.repository, event.tag, event.digest, event.note) == (
        "quay.io",
        "dgangaia/test",
        "latest",
        None,
        RESOLVE_DIGEST,
    )
    build = ADAPTERS["quay"].read({}, fixture("quay-build-queued.json"))
    assert build.events == () and "not a repository push" in build.ignored[0]
    legacy = json.dumps(
        {
            "repository": "devtable/ubuntu",
            "docker_url": "quay.io/devtable/ubuntu",
            "updated_tags": {
                "latest": "b750fe79269d2ec9a3c593ef05b4332b1d1a02a62b4accb2c21d589ff2f5f2dc"
            },
        }
    ).encode()
    (old,) = ADAPTERS["quay"].read({}, legacy).pushes
    assert (old.tag, old.digest) == ("latest", None)  # image ids are not manifest digests
