"""Property tests of image reference parsing against distribution's grammar."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_hooks.grammar import unsafe_character, valid_digest, valid_repository, valid_tag
from supplychain.reference import ImageReference, ReferenceError, parse_reference
from tests.strategies import digests, hosts_with_port, inject, repositories, tags, unsafe

SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(
    host=hosts_with_port,
    repository=repositories.filter(lambda r: len(r) <= 255),
    tag=st.none() | tags,
    digest=st.none() | digests,
)
def test_valid_references_round_trip(
    host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    text = f"{host}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    expected_tag = tag if tag or digest else "latest"
    assert ref == ImageReference(host, repository, expected_tag, digest)
    assert str(ref) == (text if tag or digest else f"{text}:latest")
    assert parse_reference(str(ref)) == ref


@SETTINGS
@given(repository=repositories.filter(lambda r: len(r) <= 240), tag=tags)
def test_docker_hub_short_names_normalise(repository: str, tag: str) -> None:
    first = repository.split("/")[0]
    if "." in first or first == "localhost":
        return  # a host by the grammar's own rule
    ref = parse_reference(f"{repository}:{tag}")
    assert ref.registry == "docker.io"
    assert ref.repository == (repository if "/" in repository else f"library/{repository}")
    assert ref.tag == tag


@SETTINGS
@given(host=hosts_with_port, repository=repositories.filter(lambda r: len(r) <= 255))
def test_hosts_are_lowercased_and_repositories_must_be_lowercase(
    host: str, repository: str
) -> None:
    if any(c.isalpha() for c in host):
        assert parse_reference(f"{host.upper()}/{repository}").registry == host
    if any(c.isalpha() for c in repository):
        try:
            parse_reference(f"{host}/{repository.upper()}")
        except ReferenceError as exc:
            assert "lowercase" in str(exc)
        else:
            raise AssertionError("an uppercase repository was accepted")


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_is_a_reference_or_a_reference_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ReferenceError as exc:
        assert str(exc)
        return
    assert unsafe_character(str(ref)) is None
    assert valid_repository(ref.repository)
    assert ref.tag is None or valid_tag(ref.tag)
    assert ref.digest is None or valid_digest(ref.digest)


@SETTINGS
@given(
    host=hosts_with_port,
    repository=repositories.filter(lambda r: len(r) <= 255),
    tag=tags,
    char=unsafe,
    position=st.integers(0, 400),
)
def test_control_and_bidi_characters_are_refused_anywhere(
    host: str, repository: str, tag: str, char: str, position: int
) -> None:
    text = inject(f"{host}/{repository}:{tag}", char, position)
    try:
        parse_reference(text)
    except ReferenceError as exc:
        assert "is not allowed" in str(exc)
    else:
        raise AssertionError(f"{text!r} was accepted")


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("registry.example.com/" + "a" * 255, True),
        ("registry.example.com/" + "a" * 256, False),
        ("registry.example.com/a:" + "t" * 128, True),
        ("registry.example.com/a:" + "t" * 129, False),
        ("registry.example.com/a@sha256:" + "a" * 63, False),
        ("registry.example.com/a@sha256:" + "A" * 64, False),
        ("registry.example.com/a@sha512:" + "a" * 128, False),
        ("registry.example.com:65536/a", False),
        ("team/app\n", False),
    ],
)
def test_length_and_digest_limits_are_distributions(text: str, accepted: bool) -> None:
    try:
        parse_reference(text)
    except ReferenceError:
        assert not accepted
    else:
        assert accepted
