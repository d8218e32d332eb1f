"""Registry webhook adapters: one module per registry's webhook format."""

from registry_hooks.acr import AcrAdapter
from registry_hooks.distribution import DistributionAdapter
from registry_hooks.github import GitHubAdapter
from registry_hooks.harbor import HarborAdapter
from registry_hooks.interface import HookAdapter, HookError, PushEvent

ADAPTERS: dict[str, HookAdapter] = {
    adapter.name: adapter
    for adapter in (DistributionAdapter(), HarborAdapter(), GitHubAdapter(), AcrAdapter())
}
"""Adapters by the name used in ``/v1/hooks/<name>``."""

__all__ = [
    "ADAPTERS",
    "AcrAdapter",
    "DistributionAdapter",
    "GitHubAdapter",
    "HarborAdapter",
    "HookAdapter",
    "HookError",
    "PushEvent",
]
