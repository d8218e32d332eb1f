"""GitLab: its container registry's notifications (a distribution registry), under its own name.

Sources: https://docs.gitlab.com/administration/packages/container_registry/ (section "Configure
container registry notifications": ``registry['notifications']`` in ``gitlab.rb`` with an
``endpoint`` and ``headers``) and https://docs.gitlab.com/user/project/integrations/webhook_events/
(project webhooks: push, tag, issue, merge request, pipeline, job, deployment, release… events; no
container registry event, see gitlab-org/gitlab issues 15385 and 32950). So the pushes GitLab can
report are its registry's distribution envelopes, read as :mod:`registry_hooks.distribution` does;
the source is named ``gitlab`` so it has its own secret. Authentication: a configured header
``Authorization: Bearer <secret>``, or ``X-Gitlab-Token: <secret>`` (what GitLab's own webhooks
send), compared in constant time. A project webhook pointed here by mistake is read as ignored,
with its ``X-Gitlab-Event`` named in the reason.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from registry_hooks._common import text
from registry_hooks.auth import bearer_matches
from registry_hooks.distribution import DistributionAdapter
from registry_hooks.interface import Delivery


class GitLabAdapter(DistributionAdapter):
    """Adapter for a GitLab container registry's notifications."""

    name = "gitlab"

    def authenticate(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        sent = headers.get("x-gitlab-token", "")
        if sent and secret:
            return hmac.compare_digest(sent.encode(), secret.encode())
        return bearer_matches(headers, secret)

    def read(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        kind = text(headers.get("x-gitlab-event"), "X-Gitlab-Event", 64)
        if kind is not None:
            reason = f"GitLab project webhook {kind!r} carries no container registry push"
            return Delivery(ignored=(reason,))
        return super().read(headers, body)
