"""Google Artifact Registry notifications through a Pub/Sub push subscription.

Sources: https://cloud.google.com/artifact-registry/docs/configure-notifications (topic ``gcr``,
messages ``{"action": "INSERT"|"DELETE", "digest": "<host>/<path>@sha256:…", "tag":
"<host>/<path>:<tag>"}``, either of digest and tag may be absent) and
https://cloud.google.com/pubsub/docs/push (body ``{"message": {"data": <base64>, "messageId",
"publishTime", "attributes"}, "subscription"}``). ``INSERT`` becomes a push (tag-only ones carry
:data:`RESOLVE_DIGEST`), ``DELETE`` a deletion. Authentication is the subscription's OIDC token
(:mod:`registry_hooks.oidc`; ``secret`` is not used). ``messageId`` is the dedupe id; Pub/Sub
redelivers with the same id. The token's ``exp`` bounds replays of a captured request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from registry_hooks._common import child, iso_time, load_object, make_event, split_reference, text
from registry_hooks.auth import bearer_token, passes
from registry_hooks.interface import RESOLVE_DIGEST, Delivery, HookAdapter, HookError
from registry_hooks.oidc import PushTokenVerifier

MAX_DATA = 64 * 1024


class GarAdapter(HookAdapter):
    """Adapter for Artifact Registry notifications pushed by Pub/Sub."""

    name = "gar"

    def __init__(self, verifier: PushTokenVerifier) -> None:
        self.verifier = verifier

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        token = bearer_token(headers)
        return token is not None and passes("Pub/Sub push", lambda: self.verifier.verify(token))

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        envelope = load_object(body)
        message = child(envelope, "message")
        message_id = text(message.get("messageId") or message.get("message_id"), "messageId", 128)
        raw = text(message.get("data"), "message.data", MAX_DATA)
        if raw is None:
            raise HookError("message.data is missing")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HookError("message.data is not base64") from None
        notice = load_object(data, "message data")
        action = text(notice.get("action"), "action", 32)
        if action not in ("INSERT", "DELETE"):
            return Delivery(ignored=(f"action {action!r} is neither INSERT nor DELETE",))
        digest_ref = text(notice.get("digest"), "digest", 4096)
        tag_ref = text(notice.get("tag"), "tag", 4096)
        if digest_ref is None and tag_ref is None:
            raise HookError("the notification names neither a digest nor a tag")
        named = [
            split_reference(ref, field)
            for field, ref in (("digest", digest_ref), ("tag", tag_ref))
            if ref is not None
        ]
        if len({(host, path) for host, path, _, _ in named}) != 1:
            raise HookError("digest and tag name different images")
        host, path = named[0][0], named[0][1]
        digest = next((found for _, _, _, found in named if found), None)
        tag = next((found for _, _, found, _ in named if found), None)
        push = action == "INSERT"
        event = make_event(
            source=self.name,
            where="notification",
            event_id=message_id,
            registry=host,
            repository=path,
            digest=digest,
            tag=tag,
            action="push" if push else "delete",
            time=iso_time(message.get("publishTime"), "publishTime"),
            note=RESOLVE_DIGEST if push and digest is None else None,
            need_digest=False,
        )
        subscription = text(envelope.get("subscription"), "subscription", 512)
        extra = {"subscription": subscription} if subscription else {}
        return Delivery((event,), delivery_id=message_id, extra=extra)
