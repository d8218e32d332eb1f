"""Registry webhook adapters: one module per registry's webhook format.

:data:`ADAPTERS` holds the adapters authenticated by a shared secret. ECR (SNS signatures) and
Artifact Registry (Pub/Sub OIDC tokens) need per-deployment trust settings: build them with
:class:`EcrAdapter` and :class:`GarAdapter`. GitLab has no registry push webhook of its own:
:class:`GitLabAdapter` reads a self-managed GitLab registry's notifications under its own name.
"""

from registry_hooks.acr import AcrAdapter
from registry_hooks.distribution import DistributionAdapter
from registry_hooks.dockerhub import DockerHubAdapter
from registry_hooks.ecr import EcrAdapter
from registry_hooks.gar import GarAdapter
from registry_hooks.github import GitHubAdapter
from registry_hooks.gitlab import GitLabAdapter
from registry_hooks.harbor import HarborAdapter
from registry_hooks.interface import (
    RESOLVE_DIGEST,
    Delivery,
    HookAdapter,
    HookError,
    HookEvent,
    PushEvent,
)
from registry_hooks.oidc import PushTokenVerifier
from registry_hooks.quay import QuayAdapter
from registry_hooks.sns import SnsVerifier

ADAPTERS: dict[str, HookAdapter] = {
    adapter.name: adapter
    for adapter in (
        DistributionAdapter(),
        HarborAdapter(),
        GitHubAdapter(),
        GitLabAdapter(),
        AcrAdapter(),
        DockerHubAdapter(),
        QuayAdapter(),
    )
}
"""Shared-secret adapters by the name used in ``/v1/hooks/<name>``."""

__all__ = [
    "ADAPTERS",
    "RESOLVE_DIGEST",
    "AcrAdapter",
    "Delivery",
    "DistributionAdapter",
    "DockerHubAdapter",
    "EcrAdapter",
    "GarAdapter",
    "GitHubAdapter",
    "GitLabAdapter",
    "HarborAdapter",
    "HookAdapter",
    "HookError",
    "HookEvent",
    "PushEvent",
    "PushTokenVerifier",
    "QuayAdapter",
    "SnsVerifier",
]
