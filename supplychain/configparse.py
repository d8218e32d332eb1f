"""Parsers of the ``SUPPLYCHAIN_*`` values, with each setting's parser and default.

:mod:`supplychain.config` reads the environment and the YAML file and builds ``Settings`` from
these; every parser takes the variable's name (without the prefix) and its text, and raises
:class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULTS", "PARSERS", "PREFIX", "STAGES", "WEBHOOK_KEY_SOURCES", "ConfigError"]

PREFIX = "SUPPLYCHAIN_"
_HOST_RE = re.compile(r"^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:]+\])(?::[0-9]{1,5})?$")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _hosts(var: str, value: str) -> frozenset[str]:
    hosts = frozenset(h.strip().lower() for h in value.split(",") if h.strip())
    for host in hosts:
        if not _HOST_RE.match(host):
            raise ConfigError(f"{PREFIX}{var}: {host!r} is not a registry host[:port]")
    return hosts


def _int(var: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{var}: {value!r} is not a whole number") from None
    if number < 0:
        raise ConfigError(f"{PREFIX}{var}: must not be negative")
    return number


def _float(var: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{var}: {value!r} is not a number") from None
    if number < 0 or number != number:
        raise ConfigError(f"{PREFIX}{var}: must not be negative")
    return number


def _bool(var: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{PREFIX}{var}: {value!r} is not a boolean (true/false)")


def _paths(var: str, value: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in value.split(",") if p.strip())
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{PREFIX}{var}: {path} is not a readable file")
    return paths


def _optional_file(var: str, value: str) -> Path | None:
    paths = _paths(var, value)
    if len(paths) > 1:
        raise ConfigError(f"{PREFIX}{var}: one file only")
    return paths[0] if paths else None


def _regexp(var: str, value: str) -> str | None:
    if not value:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{PREFIX}{var}: invalid regular expression: {exc}") from None
    return value


def _url(var: str, value: str) -> str | None:
    if not value:
        return None
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise ConfigError(f"{PREFIX}{var}: must be an http(s) URL")
    return value


def _secret(var: str, value: str) -> str | None:
    if value and len(value) < 16:
        raise ConfigError(f"{PREFIX}{var}: must be at least 16 characters")
    return value or None


WEBHOOK_KEY_SOURCES = frozenset(
    {"distribution", "gitlab", "harbor", "github", "acr", "dockerhub", "quay"}
)
"""Webhook sources proven by a secret we share (``ecr`` and ``gar`` by the sender's signature)."""


def _keys(var: str, value: str) -> tuple[tuple[str, str], ...]:
    """``source=key,…``: one webhook HMAC key or token per source (each at least 16 characters)."""
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    for source, sep, key in pairs:
        if not sep or not source.strip() or len(key) < 16:
            raise ConfigError(f"{PREFIX}{var}: want source=key pairs, keys of 16+ characters")
        if source.strip() not in WEBHOOK_KEY_SOURCES:
            known = ", ".join(sorted(WEBHOOK_KEY_SOURCES))
            raise ConfigError(f"{PREFIX}{var}: {source.strip()[:32]!r} is not one of {known}")
    return tuple((source.strip(), key) for source, _, key in pairs)


def _claims(var: str, value: str) -> tuple[tuple[str, str], ...]:
    """``claim=pattern,…``: OIDC claim conditions (shell-style patterns)."""
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    for claim, sep, pattern in pairs:
        if not sep or not claim.strip() or not pattern.strip():
            raise ConfigError(f"{PREFIX}{var}: want claim=pattern pairs (repository=org/*,…)")
    return tuple((claim.strip(), pattern.strip()) for claim, _, pattern in pairs)


def _jwks_url(var: str, value: str) -> str | None:
    """An https URL (plain http only to a loopback host, for local issuers and tests)."""
    url = _url(var, value)
    if url is None or url.startswith("https://"):
        return url
    host = (urlsplit(url).hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{PREFIX}{var}: must be https (plain http only to loopback)")
    return url


def _repositories(var: str, value: str) -> tuple[tuple[str, str], ...]:
    """``host/repository,…``: repositories a reconcile pass lists instead of a host's catalog."""
    from registry_hooks.grammar import valid_repository

    found: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, _, repository = item.partition("/")
        if not _HOST_RE.match(host.lower()) or not valid_repository(repository):
            raise ConfigError(f"{PREFIX}{var}: {item!r} is not host/repository")
        found.append((host.lower(), repository))
    return tuple(found)


def _list(var: str, value: str) -> tuple[str, ...]:
    """Comma-separated values; each is checked where it is used."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _host(var: str, value: str) -> str:
    hosts = _hosts(var, value)
    if len(hosts) != 1:
        raise ConfigError(f"{PREFIX}{var}: want one registry host[:port]")
    return next(iter(hosts))


def _optional_float(var: str, value: str) -> float | None:
    return _float(var, value) if value else None


STAGES = ("pull", "sbom", "scan", "verify")


def _deadlines(var: str, value: str) -> tuple[tuple[str, float], ...]:
    deadlines = {"pull": 900.0, "sbom": 900.0, "scan": 900.0, "verify": 300.0}
    for item in filter(None, (part.strip() for part in value.split(","))):
        stage, _, seconds = item.partition("=")
        if stage.strip() not in STAGES:
            raise ConfigError(
                f"{PREFIX}{var}: unknown stage {stage!r} (one of {', '.join(STAGES)})"
            )
        deadlines[stage.strip()] = _float(var, seconds.strip())
        if deadlines[stage.strip()] <= 0:
            raise ConfigError(f"{PREFIX}{var}: {stage.strip()} must be positive")
    return tuple(deadlines.items())


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(var: str, value: str) -> str:
        if value not in choices:
            raise ConfigError(f"{PREFIX}{var}: {value!r} is not one of {', '.join(choices)}")
        return value

    return parse


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "registries": _hosts,
    "insecure_registries": _hosts,
    "trivy_offline": _bool,
    "trivy_timeout": _float,
    "blob_cache_bytes": _int,
    "workers": _int,
    "job_max_attempts": _int,
    "job_lease_seconds": _float,
    "gate_wait_seconds": _float,
    "index_max_entries": _int,
    "index_max_depth": _int,
    "gate_max_waiters": _int,
    "gate_recheck_seconds": _float,
    "verify_keys": _paths,
    "certificate_identity_regexp": _regexp,
    "certificate_oidc_issuer_regexp": _regexp,
    "trusted_root": _optional_file,
    "require_known_predicates": _bool,
    "sign_after_allow": _bool,
    "sign_mode": _choice("tag", "referrers", "both"),
    "revocation_webhook": _url,
    "revocation_webhook_secret": _secret,
    "max_db_age_hours": _optional_float,
    "job_backoff_seconds": _float,
    "job_backoff_max_seconds": _float,
    "job_retry_window_seconds": _float,
    "job_failed_retry_seconds": _float,
    "stage_deadlines": _deadlines,
    "shutdown_grace_seconds": _float,
    "min_free_bytes": _int,
    "registry_redirect_hosts": _hosts,
    "admission_mode": _choice("enforce", "audit"),
    "gate_commit": _choice("durable", "fast"),
    "gate_decide_on_loop": _choice("auto", "yes", "no"),
    "api_processes": _int,
    "admission_wait_seconds": _float,
    "tls_cert": _optional_file,
    "tls_key": _optional_file,
    "webhook_keys": _keys,
    "token_pepper": _secret,
    "reconcile_seconds": _float,
    "reconcile_rate": _float,
    "reconcile_page_size": _int,
    "reconcile_repositories": _repositories,
    "metrics_role": lambda var, value: (
        _choice("", "webhook", "ci", "auditor", "admin")(var, value) or None
    ),
    "oidc_jwks_url": _jwks_url,
    "oidc_claims": _claims,
    "oidc_jwks_ttl_seconds": _float,
    "sns_topic_arns": _list,
    "sns_confirm_subscriptions": _bool,
    "gar_audience": lambda var, value: value or None,
    "gar_service_accounts": _list,
    "gar_jwks_file": _optional_file,
    "dockerhub_registry": _host,
    "webhook_max_age_seconds": _float,
    "intake_batch_ms": _float,
    "intake_committers": _int,
}

DEFAULTS: dict[str, str] = {
    "registries": "",
    "insecure_registries": "",
    "trivy_offline": "false",
    "trivy_timeout": "600",
    "blob_cache_bytes": str(10 * 1024**3),
    "workers": "2",
    "job_max_attempts": "5",
    "job_lease_seconds": "120",
    "gate_wait_seconds": "0",
    "index_max_entries": "256",
    "index_max_depth": "4",
    "gate_max_waiters": "1000",
    "gate_recheck_seconds": "1",
    "listen": "127.0.0.1:8080",
    "verify_keys": "",
    "certificate_identity_regexp": "",
    "certificate_oidc_issuer_regexp": "",
    "trusted_root": "",
    "require_known_predicates": "false",
    "sign_after_allow": "false",
    "sign_mode": "tag",
    "revocation_webhook": "",
    "revocation_webhook_secret": "",
    "max_db_age_hours": "",
    "job_backoff_seconds": "2",
    "job_backoff_max_seconds": "300",
    "job_retry_window_seconds": "1800",
    "job_failed_retry_seconds": "3600",
    "stage_deadlines": "",
    "shutdown_grace_seconds": "30",
    "min_free_bytes": str(256 * 1024**2),
    "registry_redirect_hosts": "",
    "admission_mode": "enforce",
    "gate_commit": "durable",
    "gate_decide_on_loop": "auto",
    "api_processes": "1",
    "admission_wait_seconds": "5",
    "tls_cert": "",
    "tls_key": "",
    "webhook_keys": "",
    "token_pepper": "",
    "metrics_role": "",
    "oidc_jwks_url": "",
    "oidc_claims": "",
    "oidc_jwks_ttl_seconds": "3600",
    "reconcile_seconds": "0",
    "reconcile_rate": "10",
    "reconcile_page_size": "100",
    "reconcile_repositories": "",
    "sns_topic_arns": "",
    "sns_confirm_subscriptions": "true",
    "gar_audience": "",
    "gar_service_accounts": "",
    "gar_jwks_file": "",
    "dockerhub_registry": "docker.io",
    "webhook_max_age_seconds": "3600",
    "intake_batch_ms": "2",
    "intake_committers": "1",
}
