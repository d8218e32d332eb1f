"""Artifact Registry notifications over Pub/Sub push: OIDC tokens from a fake issuer's real key."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from registry_hooks import RESOLVE_DIGEST, GarAdapter, HookError, PushTokenVerifier
from registry_hooks.oidc import static_key_set
from tests.support.cloud_fakes import FakeOidcIssuer

DATA = Path(__file__).parent / "data" / "hooks"
AUDIENCE = "https://scanner.example.com/v1/hooks/gar"
ACCOUNT = "pubsub-push@project.iam.gserviceaccount.com"
DIGEST = "sha256:" + "6e" * 32
IMAGE = "us-west1-docker.pkg.dev/my-project/my-repo/hello-world"


@pytest.fixture(scope="module")
def issuer() -> FakeOidcIssuer:
    return FakeOidcIssuer()


def gar(issuer: FakeOidcIssuer) -> GarAdapter:
    return GarAdapter(PushTokenVerifier(static_key_set(issuer.jwks), AUDIENCE, [ACCOUNT]))


def push_body(notice: dict[str, Any] | bytes, message_id: str = "2070443601311540") -> bytes:
    data = notice if isinstance(notice, bytes) else json.dumps(notice).encode()
    return json.dumps(
        {
            "message": {
                "attributes": {},
                "data": base64.b64encode(data).decode(),
                "messageId": message_id,
                "publishTime": "2026-01-01T00:00:00.123Z",
            },
            "subscription": "projects/my-project/subscriptions/scanner",
        }
    ).encode()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_genuine_push_token_authenticates(issuer: FakeOidcIssuer) -> None:
    body = push_body({"action": "INSERT", "digest": f"{IMAGE}@{DIGEST}"})
    assert gar(issuer).authenticate(bearer(issuer.token()), body, "unused")
    assert gar(issuer).authenticate(bearer(issuer.token(iss="accounts.google.com")), body, "")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other.example.com/"},
        {"email": "someone-else@project.iam.gserviceaccount.com"},
        {"email_verified": False},
        {"email": None},
        {"iss": "https://evil.example.com"},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
    ],
)
def test_wrong_audience_sender_issuer_or_expired_tokens_are_refused(
    issuer: FakeOidcIssuer, claims: dict[str, Any]
) -> None:
    assert not gar(issuer).authenticate(bearer(issuer.token(**claims)), b"{}", "")


def test_tokens_of_another_key_or_algorithm_and_non_bearer_headers_are_refused(
    issuer: FakeOidcIssuer,
) -> None:
    stranger = FakeOidcIssuer(kid=issuer.kid)  # same key id, different key
    assert not gar(issuer).authenticate(bearer(stranger.token()), b"{}", "")
    unknown = FakeOidcIssuer(kid="other-key")
    assert not gar(issuer).authenticate(bearer(unknown.token()), b"{}", "")
    token = issuer.token()
    _, payload, _ = token.split(".")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","kid":"fake-key-1"}').rstrip(b"=")
    assert not gar(issuer).authenticate(bearer(f"{none_alg.decode()}.{payload}."), b"{}", "")
    assert not gar(issuer).authenticate({"authorization": f"Basic {token}"}, b"{}", "")
    assert not gar(issuer).authenticate({}, b"{}", "")
    with pytest.raises(HookError, match="no audience"):
        PushTokenVerifier(static_key_set(issuer.jwks), "", [ACCOUNT]).verify(token)


def test_insert_with_digest_and_tag_is_a_pinned_push(issuer: FakeOidcIssuer) -> None:
    notice = {"action": "INSERT", "digest": f"{IMAGE}@{DIGEST}", "tag": f"{IMAGE}:1.1"}
    delivery = gar(issuer).read({}, push_body(notice))
    (push,) = delivery.pushes
    assert (push.registry, push.repository, push.digest, push.tag, push.note) == (
        "us-west1-docker.pkg.dev",
        "my-project/my-repo/hello-world",
        DIGEST,
        "1.1",
        None,
    )
    assert push.event_id == delivery.delivery_id == "2070443601311540"
    assert push.time is not None and push.time.year == 2026
    assert delivery.extra["subscription"] == "projects/my-project/subscriptions/scanner"


def test_tag_only_insert_says_resolve_and_delete_is_a_deletion(issuer: FakeOidcIssuer) -> None:
    (tagged,) = gar(issuer).read({}, push_body({"action": "INSERT", "tag": f"{IMAGE}:1.1"})).events
    assert (tagged.action, tagged.digest, tagged.note) == ("push", None, RESOLVE_DIGEST)
    with pytest.raises(HookError, match=r"message\.data is missing"):
        gar(issuer).read({}, (DATA / "gar-delete-tag.json").read_bytes())  # no push envelope
    (gone,) = gar(issuer).read({}, push_body((DATA / "gar-delete-tag.json").read_bytes())).events
    assert (gone.action, gone.tag, gone.digest) == ("delete", "1.1", None)


@pytest.mark.parametrize("name", ["gar-insert-digest.json", "gar-insert-tag.json"])
def test_documented_examples_with_elided_digests_are_refused_clearly(
    issuer: FakeOidcIssuer, name: str
) -> None:
    with pytest.raises(HookError, match="not a digest"):
        gar(issuer).read({}, push_body((DATA / name).read_bytes()))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not base64!", "not base64"),
        (base64.b64encode(b"[1]"), "not a JSON object"),
        (base64.b64encode(b'{"action": "INSERT"}'), "neither a digest nor a tag"),
    ],
)
def test_bad_message_data_is_a_clear_error(issuer: FakeOidcIssuer, data: bytes, why: str) -> None:
    body = json.dumps({"message": {"data": data.decode(), "messageId": "1"}}).encode()
    with pytest.raises(HookError, match=why):
        gar(issuer).read({}, body)
    mixed = {"action": "INSERT", "digest": f"{IMAGE}@{DIGEST}", "tag": "gcr.io/p/other:1"}
    with pytest.raises(HookError, match="different images"):
        gar(issuer).read({}, push_body(mixed))
