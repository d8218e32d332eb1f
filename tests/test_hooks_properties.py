"""Property tests of every webhook adapter: garbage in → a Delivery or HookError, never a crash;
generated valid deliveries → the right event; unsafe characters → HookError."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_hooks import (
    ADAPTERS,
    RESOLVE_DIGEST,
    Delivery,
    EcrAdapter,
    GarAdapter,
    HookAdapter,
    HookError,
    PushTokenVerifier,
    SnsVerifier,
)
from registry_hooks.mediatypes import OCI_MANIFEST
from tests.strategies import (
    digests,
    hosts_with_port,
    inject,
    json_values,
    repositories,
    tags,
    unsafe,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ALL: dict[str, HookAdapter] = {
    **ADAPTERS,
    "ecr": EcrAdapter(SnsVerifier([], lambda url: b"")),
    "gar": GarAdapter(PushTokenVerifier(lambda kid: None, "aud", ["a@b"])),
}
Built = tuple[dict[str, str], bytes]


def distribution(host: str, repo: str, tag: str, digest: str) -> Built:
    target = {"mediaType": OCI_MANIFEST, "digest": digest, "repository": repo, "tag": tag}
    event = {"id": "e1", "action": "push", "target": target, "request": {"host": host}}
    return {}, json.dumps({"events": [event]}).encode()


def harbor(host: str, repo: str, tag: str, digest: str) -> Built:
    resource = {"digest": digest, "tag": tag, "resource_url": f"{host}/{repo}:{tag}"}
    data = {"resources": [resource], "repository": {"repo_full_name": repo}}
    return {}, json.dumps({"type": "PUSH_ARTIFACT", "occur_at": 1, "event_data": data}).encode()


def github(host: str, repo: str, tag: str, digest: str) -> Built:
    version = {
        "id": 1,
        "version": digest,
        "container_metadata": {"tag": {"name": tag, "digest": digest}},
        "package_url": f"{host}/{repo}:{tag}",
    }
    package = {"package_type": "container", "package_version": version}
    body = json.dumps({"action": "published", "package": package}).encode()
    return {"x-github-event": "package", "x-github-delivery": "d1"}, body


def acr(host: str, repo: str, tag: str, digest: str) -> Built:
    target = {"mediaType": OCI_MANIFEST, "digest": digest, "repository": repo, "tag": tag}
    event = {"id": "a1", "action": "push", "target": target, "request": {"host": host}}
    return {}, json.dumps(event).encode()


def dockerhub(host: str, repo: str, tag: str, digest: str) -> Built:
    payload = {"push_data": {"pushed_at": 1, "tag": tag}, "repository": {"repo_name": repo}}
    return {}, json.dumps(payload).encode()


def quay(host: str, repo: str, tag: str, digest: str) -> Built:
    payload = {"repository": repo, "docker_url": f"{host}/{repo}", "updated_tags": [tag]}
    return {}, json.dumps(payload).encode()


def ecr(host: str, repo: str, tag: str, digest: str) -> Built:
    detail = {
        "result": "SUCCESS",
        "repository-name": repo,
        "image-digest": digest,
        "action-type": "PUSH",
        "image-tag": tag,
    }
    event = {
        "id": "b1",
        "source": "aws.ecr",
        "detail-type": "ECR Image Action",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": detail,
    }
    sns = {"Type": "Notification", "MessageId": "m1", "Message": json.dumps(event)}
    return {}, json.dumps(sns).encode()


def gar(host: str, repo: str, tag: str, digest: str) -> Built:
    notice = {
        "action": "INSERT",
        "digest": f"{host}/{repo}@{digest}",
        "tag": f"{host}/{repo}:{tag}",
    }
    data = base64.b64encode(json.dumps(notice).encode()).decode()
    return {}, json.dumps({"message": {"data": data, "messageId": "g1"}}).encode()


BUILDERS: dict[str, Callable[[str, str, str, str], Built]] = {
    "distribution": distribution,
    "gitlab": distribution,  # a GitLab registry sends distribution envelopes
    "harbor": harbor,
    "github": github,
    "acr": acr,
    "dockerhub": dockerhub,
    "quay": quay,
    "ecr": ecr,
    "gar": gar,
}
TAG_ONLY = {"dockerhub", "quay"}
FIXED_REGISTRY = {"dockerhub": "docker.io", "ecr": ECR_REGISTRY}


def test_every_adapter_has_a_builder() -> None:
    assert set(BUILDERS) == set(ALL)


def read_or_error(name: str, headers: dict[str, str], body: bytes) -> Delivery | None:
    try:
        delivery = ALL[name].read(headers, body)
    except HookError as exc:
        assert str(exc)
        return None
    assert isinstance(delivery, Delivery)
    assert delivery.events or delivery.ignored  # an ignored delivery always says why
    return delivery


@pytest.mark.parametrize("name", sorted(BUILDERS))
@SETTINGS
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_are_a_delivery_or_a_hook_error(name: str, body: bytes) -> None:
    read_or_error(name, {}, body)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@SETTINGS
@given(document=json_values)
def test_arbitrary_json_is_a_delivery_or_a_hook_error(name: str, document: Any) -> None:
    read_or_error(name, {}, json.dumps(document).encode())


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaves(item, (*path, key))] or [path]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaves(item, (*path, i))] or [path]
    return [path]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@pytest.mark.parametrize("name", sorted(BUILDERS))
@SETTINGS
@given(data=st.data(), replacement=json_values)
def test_valid_deliveries_with_one_field_replaced_never_crash(
    name: str, data: st.DataObject, replacement: Any
) -> None:
    headers, body = BUILDERS[name]("registry.example.com", "team/app", "v1", "sha256:" + "a" * 64)
    document = json.loads(body)
    path = data.draw(st.sampled_from(_leaves(document)))
    read_or_error(name, headers, json.dumps(_replace(document, path, replacement)).encode())


@pytest.mark.parametrize("name", sorted(BUILDERS))
@SETTINGS
@given(
    host=hosts_with_port,
    repo=repositories.filter(lambda r: len(r) <= 200),
    tag=tags,
    digest=digests,
)
def test_generated_valid_deliveries_give_the_right_event(
    name: str, host: str, repo: str, tag: str, digest: str
) -> None:
    headers, body = BUILDERS[name](host, repo, tag, digest)
    delivery = ALL[name].read(headers, body)
    (event,) = delivery.events
    assert event.action == "push" and event.source == name
    assert event.registry == FIXED_REGISTRY.get(name, host)
    expected_repo = repo if name != "dockerhub" or "/" in repo else f"library/{repo}"
    assert (event.repository, event.tag) == (expected_repo, tag)
    if name in TAG_ONLY:
        assert (event.digest, event.note) == (None, RESOLVE_DIGEST)
    else:
        assert (event.digest, event.note) == (digest, None)
    parsed = ALL[name].parse(body, None)  # the push-only view, without the request headers
    assert [(e.registry, e.repository, e.digest, e.tag) for e in parsed] == [
        (event.registry, event.repository, event.digest, event.tag)
    ]


@pytest.mark.parametrize("name", sorted(BUILDERS))
@SETTINGS
@given(
    repo=repositories.filter(lambda r: len(r) <= 200),
    tag=tags,
    char=unsafe,
    position=st.integers(0, 200),
    where=st.sampled_from(["repo", "tag"]),
)
def test_newline_nul_and_bidi_overrides_are_refused(
    name: str, repo: str, tag: str, char: str, position: int, where: str
) -> None:
    if where == "repo":
        repo = inject(repo, char, position)
    else:
        tag = inject(tag, char, position)
    headers, body = BUILDERS[name]("registry.example.com", repo, tag, "sha256:" + "b" * 64)
    with pytest.raises(HookError):
        ALL[name].read(headers, body)
