"""Amazon SNS HTTP(S) message signatures, SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA).

Sources: https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html and
https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html. No SNS validator is among
the service's dependencies, and the check is small, so it is written here with ``cryptography``:

- ``SigningCertURL`` must be ``https://sns.<region>.amazonaws.com/<path>.pem`` (whole-string
  match, no user, port, query or fragment) in the region of ``TopicArn``; no other URL is ever
  fetched, and the fetch goes through an injectable :data:`CertificateFetcher`;
- the certificate must be within its validity period and hold an RSA key;
- the string to sign is ``key\\nvalue\\n`` for Message, MessageId, Subject (if present),
  Timestamp, TopicArn, Type (notifications) or Message, MessageId, SubscribeURL, Timestamp, Token,
  TopicArn, Type (subscription confirmations);
- ``TopicArn`` must be one the operator configured, and the signed ``Timestamp`` within
  ``max_age`` in the past (and at most five minutes ahead): an old message replayed is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from registry_hooks._common import iso_time, text
from registry_hooks.interface import HookError

__all__ = [
    "CertificateFetcher",
    "SnsVerifier",
    "check_certificate_url",
    "confirm_subscription",
    "fetch_certificate",
    "string_to_sign",
]

CertificateFetcher = Callable[[str], bytes]
"""Returns the PEM bytes at an already checked ``https://sns.<region>.amazonaws.com`` URL."""

REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
CERT_URL = re.compile(rf"https://sns\.({REGION})\.amazonaws\.com/[A-Za-z0-9_./-]+\.pem", re.ASCII)
SUBSCRIBE_URL = re.compile(
    rf"https://sns\.({REGION})\.amazonaws\.com/\?Action=ConfirmSubscription&[A-Za-z0-9%=&:._-]+",
    re.ASCII,
)
TOPIC_ARN = re.compile(rf"arn:aws[a-z-]*:sns:({REGION}):[0-9]{{12}}:[A-Za-z0-9_.-]{{1,256}}")
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATION_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
FUTURE_SKEW = timedelta(minutes=5)


def _region(pattern: re.Pattern[str], value: str, what: str) -> str:
    match = pattern.fullmatch(value)
    if match is None:
        raise HookError(f"{what} {value[:120]!r} is not an Amazon SNS URL or ARN")
    return match.group(1)


def check_certificate_url(url: str, topic_arn: str) -> str:
    """``url`` when it is an SNS signing certificate URL in the topic's region."""
    if _region(CERT_URL, url, "SigningCertURL") != _region(TOPIC_ARN, topic_arn, "TopicArn"):
        raise HookError("SigningCertURL is in another region than the topic")
    return url


def check_subscribe_url(url: str, topic_arn: str) -> str:
    """``url`` when it is an SNS ``ConfirmSubscription`` URL in the topic's region."""
    if _region(SUBSCRIBE_URL, url, "SubscribeURL") != _region(TOPIC_ARN, topic_arn, "TopicArn"):
        raise HookError("SubscribeURL is in another region than the topic")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_certificate(url: str) -> bytes:
    """GET ``url`` (a checked SNS certificate URL) over HTTPS: no redirects, 5 s, 64 KiB."""
    if CERT_URL.fullmatch(url) is None:
        raise HookError("refusing to fetch a URL that is not an SNS certificate URL")
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(url, timeout=5) as response:  # the URL was checked just above
        data: bytes = response.read(MAX_CERT_BYTES + 1)
    if len(data) > MAX_CERT_BYTES:
        raise HookError("SNS certificate is too large")
    return data


def confirm_subscription(url: str) -> None:
    """GET a checked ``ConfirmSubscription`` URL over HTTPS: no redirects, 5 s; error if not 2xx."""
    if SUBSCRIBE_URL.fullmatch(url) is None:
        raise HookError("refusing to visit a URL that is not an SNS ConfirmSubscription URL")
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(url, timeout=5) as response:  # the URL was checked just above
        response.read(MAX_CERT_BYTES)


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for ``message`` (see the module docstring for the key order)."""
    kind = message.get("Type")
    keys = CONFIRMATION_KEYS if kind in CONFIRMATION_TYPES else NOTIFICATION_KEYS
    lines: list[str] = []
    for key in keys:
        value = message.get(key)
        if value is None and key == "Subject":
            continue
        if not isinstance(value, str):
            raise HookError(f"SNS field {key} must be a string")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode()


class SnsVerifier:
    """Checks SNS message signatures, topics and timestamps."""

    def __init__(
        self,
        topic_arns: Iterable[str],
        fetcher: CertificateFetcher = fetch_certificate,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.fetcher = fetcher
        self.max_age = max_age
        self.clock = clock
        self._certificates: dict[str, x509.Certificate] = {}

    def verify(self, message: Mapping[str, Any]) -> datetime:
        """The signed ``Timestamp`` of a genuine, fresh message from an allowed topic."""
        topic = text(message.get("TopicArn"), "TopicArn", 512)
        if topic is None or topic not in self.topic_arns:
            raise HookError("TopicArn is not one of the configured topics")
        version = message.get("SignatureVersion")
        if version not in HASHES:
            raise HookError("SignatureVersion must be 1 or 2")
        url = text(message.get("SigningCertURL"), "SigningCertURL", 1024) or ""
        certificate = self._certificate(check_certificate_url(url, topic))
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise HookError("Signature is not base64") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise HookError("the SNS certificate does not hold an RSA key")
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), HASHES[version]())
        except InvalidSignature:
            raise HookError("the SNS signature does not verify") from None
        return self._fresh(message)

    def _fresh(self, message: Mapping[str, Any]) -> datetime:
        stamp = iso_time(message.get("Timestamp"), "Timestamp")
        if stamp is None:
            raise HookError("Timestamp is missing")
        now = self.clock()
        if stamp < now - self.max_age or stamp > now + FUTURE_SKEW:
            raise HookError(f"Timestamp {stamp.isoformat()} is outside the accepted window")
        return stamp

    def _certificate(self, url: str) -> x509.Certificate:
        certificate = self._certificates.get(url)
        if certificate is None:
            try:
                certificate = x509.load_pem_x509_certificate(self.fetcher(url))
            except (OSError, ValueError) as exc:
                raise HookError(f"cannot load the SNS certificate: {type(exc).__name__}") from None
            if len(self._certificates) >= 16:
                self._certificates.clear()
            self._certificates[url] = certificate
        now = self.clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise HookError("the SNS certificate is not valid now")
        return certificate
