"""Amazon ECR image events from EventBridge, delivered by an SNS topic over HTTPS.

Sources: https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html (the "ECR
Image Action" events) and the SNS pages named in :mod:`registry_hooks.sns`. The HTTPS body is an
SNS message whose ``Message`` is the EventBridge event: ``{"id", "detail-type": "ECR Image
Action", "source": "aws.ecr", "account", "region", "time", "detail": {"result": "SUCCESS",
"repository-name", "image-digest", "action-type": "PUSH"|"DELETE", "image-tag"}}``. The registry
is ``<account>.dkr.ecr.<region>.amazonaws.com``. Authentication is the SNS signature from one of
the configured topics (``secret`` is not used); the signed ``Timestamp`` must be fresh. A
``SubscriptionConfirmation`` yields no event: its ``SubscribeURL``, once checked to be an SNS URL
in the topic's region, is in :attr:`Delivery.confirm_url` for the operator or the intake to visit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registry_hooks._common import child, iso_time, load_object, make_event, text
from registry_hooks.auth import passes
from registry_hooks.interface import Delivery, HookAdapter, HookError
from registry_hooks.sns import CONFIRMATION_TYPES, SnsVerifier, check_subscribe_url

ACTIONS = {"PUSH": "push", "DELETE": "delete"}
MAX_MESSAGE = 256 * 1024
"""SNS messages are at most 256 KiB."""


class EcrAdapter(HookAdapter):
    """Adapter for ECR image actions relayed by EventBridge → SNS → HTTPS."""

    name = "ecr"

    def __init__(self, verifier: SnsVerifier) -> None:
        self.verifier = verifier

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        def check() -> None:
            message = load_object(body)
            sent_type = headers.get("x-amz-sns-message-type")
            if sent_type is not None and sent_type != message.get("Type"):
                raise HookError("x-amz-sns-message-type does not match the message Type")
            self.verifier.verify(message)

        return passes("SNS message", check)

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        message = load_object(body)
        kind = text(message.get("Type"), "Type", 64)
        message_id = text(message.get("MessageId"), "MessageId", 128)
        topic = text(message.get("TopicArn"), "TopicArn", 512) or ""
        signed_at = iso_time(message.get("Timestamp"), "Timestamp")
        extra = {"topic_arn": topic} if topic else {}
        if kind == "SubscriptionConfirmation":
            subscribe = text(message.get("SubscribeURL"), "SubscribeURL", 2048) or ""
            url = check_subscribe_url(subscribe, topic)
            return Delivery(
                ignored=("SNS subscription confirmation: visit confirm_url to subscribe",),
                delivery_id=message_id,
                signed_at=signed_at,
                confirm_url=url,
                extra=extra,
            )
        if kind in CONFIRMATION_TYPES or kind != "Notification":
            reason = f"SNS message type {kind!r} carries no event"
            return Delivery(ignored=(reason,), delivery_id=message_id, signed_at=signed_at)
        raw = message.get("Message")  # a JSON document: newlines allowed, its strings checked
        if not isinstance(raw, str) or len(raw) > MAX_MESSAGE:
            raise HookError(f"SNS Message must be a string of at most {MAX_MESSAGE} characters")
        inner = load_object(raw.encode(), "SNS Message")
        return self._event(inner, message_id, signed_at, extra)

    def _event(
        self,
        event: dict[str, Any],
        message_id: str | None,
        signed_at: datetime | None,
        extra: dict[str, str],
    ) -> Delivery:
        def ignored(reason: str) -> Delivery:
            return Delivery(ignored=(reason,), delivery_id=message_id, signed_at=signed_at)

        if event.get("source") != "aws.ecr" or event.get("detail-type") != "ECR Image Action":
            kind = text(event.get("detail-type"), "detail-type", 128)
            return ignored(f"EventBridge event {kind!r} is not an ECR Image Action")
        detail = child(event, "detail")
        result = text(detail.get("result"), "detail.result", 32)
        if result != "SUCCESS":
            return ignored(f"ECR image action result {result!r} is not SUCCESS")
        action = ACTIONS.get(text(detail.get("action-type"), "detail.action-type", 32) or "")
        if action is None:
            return ignored("ECR action-type is neither PUSH nor DELETE")
        account = text(event.get("account"), "account", 12) or ""
        region = text(event.get("region"), "region", 32) or ""
        if not (account.isascii() and account.isdigit() and len(account) == 12):
            raise HookError("account must be a 12-digit AWS account id")
        found = make_event(
            source=self.name,
            where="ECR Image Action",
            event_id=text(event.get("id"), "id", 128),
            registry=f"{account}.dkr.ecr.{region}.amazonaws.com",
            repository=text(detail.get("repository-name"), "detail.repository-name", 4096),
            digest=text(detail.get("image-digest"), "detail.image-digest", 4096),
            tag=text(detail.get("image-tag"), "detail.image-tag", 4096),
            action="push" if action == "push" else "delete",
            time=iso_time(event.get("time"), "time"),
            need_digest=action == "push",
        )
        return Delivery((found,), delivery_id=message_id, signed_at=signed_at, extra=extra)
