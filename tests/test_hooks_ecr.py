"""ECR through EventBridge → SNS: real RSA signatures over a fake certificate host."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry_hooks import EcrAdapter, HookError, SnsVerifier
from registry_hooks.sns import check_certificate_url
from tests.support.cloud_fakes import CERT_URL, TOPIC, FakeSnsCertificateServer, sns_notification

DATA = Path(__file__).parent / "data" / "hooks"
DIGEST = "sha256:" + "7f" * 32


def ecr_event(**detail: Any) -> str:
    event = json.loads((DATA / "ecr-image-push.eventbridge.json").read_text())
    event["detail"]["image-digest"] = DIGEST  # the documented one is a 60-hex placeholder
    event["detail"].update(detail)
    return json.dumps(event)


@pytest.fixture(scope="module")
def server() -> FakeSnsCertificateServer:
    return FakeSnsCertificateServer()


def adapter(server: FakeSnsCertificateServer, **kwargs: Any) -> EcrAdapter:
    return EcrAdapter(SnsVerifier([TOPIC], server.fetch, **kwargs))


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_push_authenticates_and_reads_as_an_ecr_push(
    server: FakeSnsCertificateServer, version: str
) -> None:
    ecr = adapter(server)
    message = server.sign(sns_notification(ecr_event()), version)
    headers = {"x-amz-sns-message-type": "Notification"}
    assert ecr.authenticate(headers, body(message), "unused")
    delivery = ecr.read(headers, body(message))
    (push,) = delivery.pushes
    assert (push.registry, push.repository, push.digest, push.tag) == (
        "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "my-repository-name",
        DIGEST,
        "latest",
    )
    assert push.event_id == "13cde686-328b-6117-af20-0e5566167482"
    assert delivery.delivery_id == message["MessageId"] and delivery.signed_at is not None
    assert set(server.requested) == {CERT_URL}


def test_tampering_topic_and_type_mismatch_are_refused(server: FakeSnsCertificateServer) -> None:
    ecr = adapter(server)
    message = server.sign(sns_notification(ecr_event()))
    forged = {**message, "Message": ecr_event(**{"repository-name": "other"})}
    assert not ecr.authenticate({}, body(forged), "")
    other_topic = server.sign({**sns_notification(ecr_event()), "TopicArn": TOPIC + "-x"})
    assert not ecr.authenticate({}, body(other_topic), "")
    assert not ecr.authenticate(
        {"x-amz-sns-message-type": "SubscriptionConfirmation"}, body(message), ""
    )
    with pytest.raises(HookError, match="TopicArn is not one of"):
        SnsVerifier([], server.fetch).verify(message)


def test_a_replayed_old_message_is_refused_by_its_signed_timestamp(
    server: FakeSnsCertificateServer,
) -> None:
    old = server.sign(
        sns_notification(ecr_event(), timestamp=datetime.now(UTC) - timedelta(hours=2))
    )
    with pytest.raises(HookError, match="outside the accepted window"):
        SnsVerifier([TOPIC], server.fetch).verify(old)
    assert adapter(server, max_age=timedelta(hours=3)).authenticate({}, body(old), "")
    future = server.sign(
        sns_notification(ecr_event(), timestamp=datetime.now(UTC) + timedelta(hours=1))
    )
    assert not adapter(server).authenticate({}, body(future), "")


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com@evil.example/cert.pem",
        "https://sns.us-west-2.amazonaws.com:8443/cert.pem",
        "https://sns.us-west-2.amazonaws.com/cert.pem?x=https://evil.example/",
        "https://sns.eu-west-1.amazonaws.com/cert.pem",  # another region than the topic
        "https://sns.us-west-2.amazonaws.com/cert.pem\n",
    ],
)
def test_no_url_but_the_topics_sns_host_is_ever_fetched(
    url: str, server: FakeSnsCertificateServer
) -> None:
    fetched: list[str] = []
    verifier = SnsVerifier([TOPIC], lambda u: fetched.append(u) or server.pem)
    message = {**server.sign(sns_notification(ecr_event())), "SigningCertURL": url}
    with pytest.raises(HookError, match=r"SNS URL|another region|control character"):
        verifier.verify(message)
    assert fetched == []
    with pytest.raises(HookError):
        check_certificate_url(url, TOPIC)


def test_expired_certificate_and_bad_signature_encodings_are_refused() -> None:
    expired = FakeSnsCertificateServer(expired=True)
    with pytest.raises(HookError, match="not valid now"):
        SnsVerifier([TOPIC], expired.fetch).verify(expired.sign(sns_notification(ecr_event())))
    live = FakeSnsCertificateServer()
    message = live.sign(sns_notification(ecr_event()))
    for signature in ["EXAMPLEw6JRN...", "", live.sign(sns_notification("x"))["Signature"]]:
        with pytest.raises(HookError, match=r"base64|does not verify"):
            SnsVerifier([TOPIC], live.fetch).verify({**message, "Signature": signature})
    with pytest.raises(HookError, match="SignatureVersion"):
        SnsVerifier([TOPIC], live.fetch).verify({**message, "SignatureVersion": "3"})


def test_documented_sns_examples_read_and_fail_verification_clearly() -> None:
    verifier = SnsVerifier(["arn:aws:sns:us-west-2:123456789012:MyTopic"], lambda u: b"")
    example = json.loads((DATA / "sns-notification.json").read_text())
    with pytest.raises(HookError, match="cannot load the SNS certificate"):
        verifier.verify(example)
    ecr = EcrAdapter(verifier)
    with pytest.raises(HookError, match="SNS Message is not JSON"):
        ecr.read({}, (DATA / "sns-notification.json").read_bytes())  # "Hello world!"
    confirmation = ecr.read({}, (DATA / "sns-subscription-confirmation.json").read_bytes())
    assert confirmation.events == ()
    assert confirmation.confirm_url is not None
    assert confirmation.confirm_url.startswith(
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&"
    )
    hostile = json.loads((DATA / "sns-subscription-confirmation.json").read_text())
    hostile["SubscribeURL"] = "https://169.254.169.254/latest/meta-data/"
    with pytest.raises(HookError, match="not an Amazon SNS URL"):
        ecr.read({}, json.dumps(hostile).encode())


def test_delete_failure_and_other_event_kinds(server: FakeSnsCertificateServer) -> None:
    ecr = adapter(server)
    deleted = ecr.read({}, body(sns_notification(ecr_event(**{"action-type": "DELETE"}))))
    assert [e.action for e in deleted.events] == ["delete"] and deleted.pushes == ()
    failed = ecr.read({}, body(sns_notification(ecr_event(result="FAILURE"))))
    assert failed.events == () and "'FAILURE' is not SUCCESS" in failed.ignored[0]
    scan = json.loads(ecr_event())
    scan["detail-type"] = "ECR Image Scan"
    ignored = ecr.read({}, body(sns_notification(json.dumps(scan))))
    assert "'ECR Image Scan' is not an ECR Image Action" in ignored.ignored[0]
    documented = (DATA / "ecr-image-push.eventbridge.json").read_text()
    with pytest.raises(HookError, match="digest has 64 lowercase hex"):
        ecr.read({}, body(sns_notification(documented)))  # the docs' digest is 60 hex
