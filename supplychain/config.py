"""Configuration from ``SUPPLYCHAIN_*`` environment variables, optionally mirrored in a YAML file.

Every setting has an environment variable; ``SUPPLYCHAIN_CONFIG`` may name a YAML file whose keys
are the same names in lower case without the prefix (``database_url: …``). The environment wins
over the file. Bad values stop start-up with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["ConfigError", "Settings", "load_settings"]

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


@dataclass(frozen=True)
class Settings:
    """The service's settings; see the configuration table in the README."""

    data_dir: Path
    """Where the service keeps its database (embedded default), blob cache and work files."""
    database_url: str
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/supplychain.db``."""
    webhook_token: str | None
    """Bearer token registries must send; webhooks are refused when unset."""
    registries: frozenset[str]
    """Allowlist of registry hosts we pull from."""
    insecure_registries: frozenset[str]
    """Hosts reached over plain HTTP (loopback hosts always may be)."""
    trivy_path: str | None
    """Path of the trivy binary; default: ``trivy`` on PATH, else the one installed with us."""
    trivy_cache_dir: Path
    """Trivy's cache dir, holding its vulnerability DB under ``db/``."""
    trivy_offline: bool
    """Skip Trivy DB updates and online look-ups."""
    trivy_timeout: float
    """Seconds one Trivy run may take."""
    blob_cache_bytes: int
    """Size cap of the content-addressed blob cache."""
    workers: int
    """In-process workers started by ``serve``."""
    job_max_attempts: int
    """Attempts before a job is marked failed for good."""
    job_lease_seconds: float
    """How long a claimed job stays leased without a heartbeat."""
    gate_wait_seconds: float
    """Default seconds the gate waits for a pending verdict."""
    index_max_entries: int
    """Entries an image index (all nested levels together) may list; more is a deny."""
    index_max_depth: int
    """Levels of nested image indexes followed; deeper is a deny."""
    gate_max_waiters: int
    """Gate calls that may wait at once; past it the gate answers 429 with Retry-After."""
    gate_recheck_seconds: float
    """How often waiting gate calls look for verdicts recorded by workers in other processes."""
    listen: str
    """``host:port`` the HTTP API listens on."""
    verify_keys: tuple[Path, ...] = ()
    """PEM public keys whose cosign signatures and attestations are trusted."""
    certificate_identity: str | None = None
    """Keyless: the exact certificate identity trusted (like cosign's flag)."""
    certificate_identity_regexp: str | None = None
    """Keyless: a regular expression the certificate identity must match in full."""
    certificate_oidc_issuer: str | None = None
    """Keyless: the exact OIDC issuer trusted."""
    certificate_oidc_issuer_regexp: str | None = None
    """Keyless: a regular expression the OIDC issuer must match in full."""
    trusted_root: Path | None = None
    """Sigstore ``trusted_root.json`` of a private Sigstore (default: the public-good root)."""
    require_known_predicates: bool = False
    """Record attestations of unknown predicate types as failed."""
    sign_key: str | None = None
    """Our signing key: a private key file or ``hashivault://NAME``."""
    sign_after_allow: bool = False
    """Sign, attest SBOM and scan, and issue a VSA after each pipeline verdict."""
    sign_mode: str = "tag"
    """Where our signatures go: ``tag`` (cosign's .sig scheme), ``referrers`` or ``both``."""
    revocation_webhook: str | None = None
    """Where revocations (an allow that became a deny) are POSTed; from configuration only."""
    revocation_webhook_secret: str | None = None
    """HMAC-SHA256 key signing each revocation POST (``X-Supplychain-Signature``)."""
    max_db_age_hours: float | None = None
    """Deny decisions made on an advisory DB older than this (unless the policy sets its own)."""
    db_repository: str | None = None
    """OCI repository of an organisation's Trivy DB mirror, for ``vulndb update``."""
    job_backoff_seconds: float = 2.0
    """First retry delay of a job; doubles per retry, with jitter."""
    job_backoff_max_seconds: float = 300.0
    """Longest delay between two tries of a job."""
    job_retry_window_seconds: float = 1800.0
    """How long registry, disk or database faults are retried without spending attempts."""
    job_failed_retry_seconds: float = 3600.0
    """After a job failed for good, a new webhook or gate request queues it again after this."""
    stage_deadlines: tuple[tuple[str, float], ...] = (
        ("pull", 900.0),
        ("sbom", 900.0),
        ("scan", 900.0),
        ("verify", 300.0),
    )
    """Seconds each stage may run before its attempt is ended (``pull=900,scan=600,…``)."""
    shutdown_grace_seconds: float = 30.0
    """On SIGTERM: how long running jobs may go on before their leases are released."""
    min_free_bytes: int = 256 * 1024**2
    """``/readyz`` is not ready when the data dir's disk has less free space than this."""
    registry_redirect_hosts: frozenset[str] = frozenset()
    """Hosts (``host[:port]``) a registry may redirect reads to besides allowlisted registries,
    e.g. the object storage serving its blobs; default none."""
    admission_mode: str = "enforce"
    """Kubernetes admission: ``enforce`` denies, ``audit`` admits with warnings (errors deny)."""
    admission_wait_seconds: float = 5.0
    """Seconds one admission request may wait for pending verdicts (all its images together)."""
    api_processes: int = 1
    """``serve``: HTTP processes sharing the listening socket (the in-process workers run in
    the parent); more than one suits PostgreSQL, and SQLite in WAL mode copes."""
    gate_commit: str = "durable"
    """How the gate's answers are committed before they are sent: ``durable`` (flushed to disk)
    or ``fast`` (committed without waiting for the flush: kept across a crash of supplychain,
    the newest may be lost when the machine or PostgreSQL itself crashes)."""
    tls_cert: Path | None = None
    """PEM certificate (chain) ``serve`` presents over HTTPS; with ``tls_key``."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    webhook_keys: tuple[tuple[str, str], ...] = ()
    """Per webhook source, its own HMAC key or bearer token (``github=…,harbor=…``)."""
    token_pepper: str | None = None
    """Server key of the HMAC-SHA-256 under which API tokens are stored."""
    metrics_role: str | None = None
    """Role ``/metrics`` asks for; None: open."""
    oidc_issuer: str | None = None
    """The one OIDC issuer (exact ``iss``) whose JWTs may act as ``ci``; None: no JWT accepted."""
    oidc_jwks_url: str | None = None
    """Where that issuer's JWKS is fetched (https; http only to loopback)."""
    oidc_audience: str | None = None
    """The ``aud`` an accepted JWT must be made for."""
    oidc_claims: tuple[tuple[str, str], ...] = ()
    """Claim conditions an accepted JWT must meet, all of them (``repository=org/*,…``)."""
    oidc_jwks_ttl_seconds: float = 3600.0
    """How long a fetched JWKS is used before it is fetched again."""
    reconcile_seconds: float = 0.0
    """``serve`` lists the allowlisted registries and queues digests never seen, at start and
    then every this many seconds; 0: never (``supplychain reconcile`` runs one pass)."""
    reconcile_rate: float = 10.0
    """Requests a second a reconcile pass sends to one registry (0: no limit)."""
    reconcile_page_size: int = 100
    """``n``: entries asked for per catalog or tag-list page."""
    reconcile_repositories: tuple[tuple[str, str], ...] = ()
    """``host/repository`` pairs listed instead of the catalog of their host (for registries
    without ``/v2/_catalog``, or to list only some repositories)."""
    sns_topic_arns: tuple[str, ...] = ()
    """SNS topics whose signed messages ``/v1/hooks/ecr`` accepts; none: the route refuses all."""
    sns_confirm_subscriptions: bool = True
    """Visit the (checked ``sns.<region>.amazonaws.com``) URL of a signed subscription
    confirmation from a configured topic."""
    gar_audience: str | None = None
    """Audience of the Pub/Sub push tokens ``/v1/hooks/gar`` accepts (the push endpoint URL)."""
    gar_service_accounts: tuple[str, ...] = ()
    """Service accounts (``email`` claim) allowed to push to ``/v1/hooks/gar``."""
    gar_jwks_file: Path | None = None
    """JWKS of the push tokens' issuer; default: Google's published keys."""
    dockerhub_registry: str = "docker.io"
    """The registry Docker Hub's tag-only events are resolved at (must be allowlisted)."""
    webhook_max_age_seconds: float = 3600.0
    """Oldest signed timestamp a webhook may carry (SNS): older deliveries are replays."""
    intake_batch_ms: float = 2.0
    """Group commit: deliveries arriving within this many ms share one transaction."""
    intake_committers: int = 4
    """Group commit threads per HTTP process on PostgreSQL (SQLite has one writer: always 1)."""

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded single-machine database."""
        return self.database_url.startswith("sqlite")


_PARSERS: dict[str, Callable[[str, str], Any]] = {
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

_DEFAULTS: dict[str, str] = {
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
    "intake_committers": "4",
}


def _file_values(environ: Mapping[str, str]) -> dict[str, str]:
    path = environ.get(f"{PREFIX}CONFIG")
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{PREFIX}CONFIG: cannot read {path}: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{PREFIX}CONFIG: {path} must hold a mapping of settings")
    known = {f.name for f in fields(Settings)}
    values: dict[str, str] = {}
    for key, value in loaded.items():
        name = str(key).lower()
        if name not in known:
            raise ConfigError(f"{PREFIX}CONFIG: unknown setting {key!r} in {path}")
        values[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return values


def check_data_dir(path: Path) -> None:
    """Raise :class:`ConfigError` naming ``SUPPLYCHAIN_DATA_DIR`` unless we can write there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{PREFIX}DATA_DIR: cannot write to {path}: {reason}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    raw = {**_DEFAULTS, **_file_values(env)}
    for f in fields(Settings):
        var = f"{PREFIX}{f.name.upper()}"
        if var in env:
            raw[f.name] = env[var]
    data_dir = Path(raw.get("data_dir") or Path.home() / ".local" / "share" / "supplychain")
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    values: dict[str, Any] = {
        name: parse(name.upper(), raw[name]) for name, parse in _PARSERS.items()
    }
    database_url = raw.get("database_url") or f"sqlite:///{data_dir / 'supplychain.db'}"
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", database_url):
        raise ConfigError(
            f"{PREFIX}DATABASE_URL: only sqlite:// and postgresql:// URLs are supported"
        )
    token = raw.get("webhook_token") or None
    if token is not None and len(token) < 16:
        raise ConfigError(f"{PREFIX}WEBHOOK_TOKEN: must be at least 16 characters")
    listen = raw["listen"]
    if not re.match(r"^[\w.\-\[\]:]+:\d{1,5}$", listen):
        raise ConfigError(f"{PREFIX}LISTEN: {listen!r} is not host:port")
    if not 1 <= values["intake_committers"] <= 64:
        raise ConfigError(f"{PREFIX}INTAKE_COMMITTERS: from 1 to 64")
    if values["workers"] > 64:
        raise ConfigError(f"{PREFIX}WORKERS: at most 64")
    for name in (
        "trivy_timeout",
        "job_lease_seconds",
        "job_backoff_seconds",
        "gate_recheck_seconds",
        "oidc_jwks_ttl_seconds",
    ):
        if values[name] <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()}: must be positive")
    if values["job_max_attempts"] < 1:
        raise ConfigError(f"{PREFIX}JOB_MAX_ATTEMPTS: at least 1")
    if not 1 <= values["index_max_entries"] <= 100_000:
        raise ConfigError(f"{PREFIX}INDEX_MAX_ENTRIES: from 1 to 100000")
    if not 0 <= values["index_max_depth"] <= 16:
        raise ConfigError(f"{PREFIX}INDEX_MAX_DEPTH: from 0 to 16")
    if 0 < values["reconcile_seconds"] < 10:
        raise ConfigError(f"{PREFIX}RECONCILE_SECONDS: 0 (off) or at least 10")
    if not 1 <= values["reconcile_page_size"] <= 10_000:
        raise ConfigError(f"{PREFIX}RECONCILE_PAGE_SIZE: from 1 to 10000")
    outside = {h for h, _ in values["reconcile_repositories"]} - values["registries"]
    if outside:
        raise ConfigError(
            f"{PREFIX}RECONCILE_REPOSITORIES: {', '.join(sorted(outside))} not in "
            f"{PREFIX}REGISTRIES"
        )
    identity = raw.get("certificate_identity") or None
    issuer = raw.get("certificate_oidc_issuer") or None
    identity_set = identity or values["certificate_identity_regexp"]
    issuer_set = issuer or values["certificate_oidc_issuer_regexp"]
    if bool(identity_set) != bool(issuer_set):
        raise ConfigError(
            f"{PREFIX}CERTIFICATE_IDENTITY and {PREFIX}CERTIFICATE_OIDC_ISSUER (or their _REGEXP "
            "forms) go together"
        )
    if (values["tls_cert"] is None) != (values["tls_key"] is None):
        raise ConfigError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together")
    if values["admission_wait_seconds"] > 25:
        raise ConfigError(f"{PREFIX}ADMISSION_WAIT_SECONDS: at most 25 (webhooks time out at 30)")
    sign_key = raw.get("sign_key") or None
    if values["sign_after_allow"] and not sign_key:
        raise ConfigError(f"{PREFIX}SIGN_AFTER_ALLOW: needs {PREFIX}SIGN_KEY")
    oidc_issuer = raw.get("oidc_issuer") or None
    oidc_audience = raw.get("oidc_audience") or None
    oidc = (oidc_issuer, values["oidc_jwks_url"], oidc_audience, values["oidc_claims"])
    if any(oidc) and not all(oidc):
        raise ConfigError(
            f"{PREFIX}OIDC_ISSUER, {PREFIX}OIDC_JWKS_URL, {PREFIX}OIDC_AUDIENCE and "
            f"{PREFIX}OIDC_CLAIMS go together (an issuer signs tokens for all its users: "
            "at least one claim condition, such as repository=org/*, is required)"
        )
    return Settings(
        oidc_issuer=oidc_issuer,
        oidc_audience=oidc_audience,
        db_repository=raw.get("db_repository") or None,
        sign_key=sign_key,
        certificate_identity=identity,
        certificate_oidc_issuer=issuer,
        data_dir=data_dir,
        database_url=database_url,
        webhook_token=token,
        trivy_path=raw.get("trivy_path") or None,
        trivy_cache_dir=Path(raw.get("trivy_cache_dir") or data_dir / "trivy"),
        listen=listen,
        **values,
    )
