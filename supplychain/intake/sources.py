"""The webhook sources the service answers at ``/v1/hooks/<source>``, built from its settings.

Each source has its own secret: a key in ``SUPPLYCHAIN_WEBHOOK_KEYS`` (bearer token or HMAC key)
or a ``webhook`` token made for it; ``SUPPLYCHAIN_WEBHOOK_TOKEN`` is the ``distribution`` source's
token. ECR and Artifact Registry have no shared secret: they are authenticated by the sender's
own signature (SNS message signatures from the configured topics, Pub/Sub OIDC push tokens for the
configured audience and service accounts), so without those settings they refuse everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from registry_hooks import (
    ADAPTERS,
    DockerHubAdapter,
    EcrAdapter,
    GarAdapter,
    HookAdapter,
    HookError,
    PushTokenVerifier,
    SnsVerifier,
)
from registry_hooks.auth import BearerTokenAuth
from registry_hooks.gitlab import GitLabAdapter
from registry_hooks.oidc import KeySet, google_key_set, static_key_set
from registry_hooks.sns import CertificateFetcher, confirm_subscription, fetch_certificate
from supplychain.config import ConfigError, Settings

__all__ = ["SIGNED_BY_SENDER", "Sources", "build_sources"]

SIGNED_BY_SENDER = frozenset({"ecr", "gar"})
"""Sources proven by the sender's own signature, not by a secret we share with it."""


@dataclass(frozen=True)
class Sources:
    """Every adapter by its source name, and what proves a request came from that source."""

    adapters: dict[str, HookAdapter]
    """Adapter per source name (the ``<source>`` of the URL)."""
    keys: dict[str, str] = field(default_factory=dict)
    """Per source, its configured bearer token or HMAC key (never logged)."""
    confirm: Callable[[str], None] | None = None
    """Visits a checked SNS ``ConfirmSubscription`` URL; None: confirmations are only recorded."""

    def secret_in_query(self, source: str) -> bool:
        """True for senders that cannot set a header (Docker Hub, Quay): the webhook URL's
        ``?token=`` stands in for ``Authorization: Bearer``."""
        return source in ("dockerhub", "quay")

    def uses_bearer(self, source: str) -> bool:
        """True when ``webhook`` tokens made for ``source`` may authenticate it."""
        return isinstance(self.adapters.get(source), BearerTokenAuth | GitLabAdapter)


def _gar_keys(settings: Settings) -> KeySet:
    if settings.gar_jwks_file is None:
        return google_key_set()
    try:
        return static_key_set(json.loads(settings.gar_jwks_file.read_text()))
    except (OSError, ValueError, HookError) as exc:
        raise ConfigError(f"SUPPLYCHAIN_GAR_JWKS_FILE: unusable: {exc}") from None


def build_sources(
    settings: Settings,
    *,
    sns_fetcher: CertificateFetcher = fetch_certificate,
    sns_confirm: Callable[[str], None] = confirm_subscription,
    gar_keys: KeySet | None = None,
) -> Sources:
    """The sources of ``settings``; the fetchers and key set are injectable for tests (the
    cloud services they reach are not reachable from a test)."""
    adapters: dict[str, HookAdapter] = dict(ADAPTERS)
    adapters["dockerhub"] = DockerHubAdapter(settings.dockerhub_registry)
    max_age = timedelta(seconds=settings.webhook_max_age_seconds)
    adapters["ecr"] = EcrAdapter(SnsVerifier(settings.sns_topic_arns, sns_fetcher, max_age))
    verifier = PushTokenVerifier(
        gar_keys or _gar_keys(settings),
        settings.gar_audience or "",
        settings.gar_service_accounts,
    )
    adapters["gar"] = GarAdapter(verifier)
    keys = dict(settings.webhook_keys)  # their sources are checked by the settings
    if settings.webhook_token and "distribution" not in keys:
        keys["distribution"] = settings.webhook_token  # the former shared token
    confirm = sns_confirm if settings.sns_confirm_subscriptions else None
    return Sources(adapters, keys, confirm)
