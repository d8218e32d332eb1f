"""Configuration from ``SUPPLYCHAIN_*`` environment variables, optionally mirrored in a YAML file.

Every setting has an environment variable; ``SUPPLYCHAIN_CONFIG`` may name a YAML file whose keys
are the same names in lower case without the prefix (``database_url: …``). The environment wins
over the file. Bad values stop start-up with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from supplychain.configparse import (
    DEFAULTS,
    PARSERS,
    PREFIX,
    WEBHOOK_KEY_SOURCES,
    ConfigError,
)

__all__ = ["WEBHOOK_KEY_SOURCES", "ConfigError", "Settings", "load_settings"]


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
    gate_decide_on_loop: str = "auto"
    """Where a cached answer's one read runs: ``yes`` on the event loop (no hand-off to a
    thread and back: less CPU and latency, but a database that stops answering stalls every
    request of the process until its connection times out), ``no`` on a thread, ``auto`` on
    the loop for SQLite only (docs/operations.md, "The gate under load")."""
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
    intake_committers: int = 1
    """Group commit threads per HTTP process on PostgreSQL (SQLite has one writer: always 1);
    more than one helps when each round trip to the database is slow (a remote server)."""

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded single-machine database."""
        return self.database_url.startswith("sqlite")


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
    raw = {**DEFAULTS, **_file_values(env)}
    for f in fields(Settings):
        var = f"{PREFIX}{f.name.upper()}"
        if var in env:
            raw[f.name] = env[var]
    data_dir = Path(raw.get("data_dir") or Path.home() / ".local" / "share" / "supplychain")
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    values: dict[str, Any] = {
        name: parse(name.upper(), raw[name]) for name, parse in PARSERS.items()
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
