"""Builds the service's parts from settings: one place that wires the pipeline together."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from supplychain.config import Settings
from supplychain.decide.gate import Gate
from supplychain.decide.policy import RulesPolicy, load_policy
from supplychain.evidence.database import Database
from supplychain.intake.webhooks import Intake
from supplychain.queue.jobs import JobQueue
from supplychain.queue.worker import Issuer, Worker
from supplychain.registry import BlobCache, RegistryClient, docker_credentials
from supplychain.signatures import StorageMode
from supplychain.signatures.cosign import issue_for_outcome
from supplychain.signatures.signer import signer_for
from supplychain.signatures.sigstore_verify import IdentityPolicy
from supplychain.signatures.storage import SignatureStore
from supplychain.stages.cataloger import OwnCataloger
from supplychain.stages.pipeline import Outcome, Pipeline
from supplychain.stages.scanner import TrivyRunner, TrivyScanner
from supplychain.stages.source import RegistrySource
from supplychain.stages.verifier import SignatureVerifier, TrustPolicy

__all__ = ["Service", "build_service"]


@dataclass
class Service:
    """The wired parts of one service process."""

    settings: Settings
    db: Database
    queue: JobQueue
    client: RegistryClient
    pipeline: Pipeline
    intake: Intake
    gate: Gate
    trivy: TrivyRunner
    issuer: Issuer | None = None

    def worker(self, name: str | None = None) -> Worker:
        """A new worker sharing this process's parts."""
        return Worker(self.db, self.queue, self.pipeline, self.client, name, issuer=self.issuer)


def trust_policy(settings: Settings) -> TrustPolicy:
    """Whom the verifier trusts: the configured public keys and certificate identity."""
    identities = IdentityPolicy.from_flags(
        settings.certificate_identity,
        settings.certificate_identity_regexp,
        settings.certificate_oidc_issuer,
        settings.certificate_oidc_issuer_regexp,
    )
    return TrustPolicy.from_key_files(
        settings.verify_keys,
        identities=identities,
        require_known_predicates=settings.require_known_predicates,
        trusted_root=settings.trusted_root,
    )


def signing_issuer(settings: Settings, client: RegistryClient) -> Issuer | None:
    """After each verdict: sign and attest (on allow) and issue a VSA, when configured.

    The key is loaded now, so a wrong password or missing key stops start-up, not a job.
    """
    if not settings.sign_after_allow or settings.sign_key is None:
        return None
    signer = signer_for(settings.sign_key)
    store = SignatureStore(client)
    mode = cast(StorageMode, settings.sign_mode)  # validated by config: tag|referrers|both

    def issue(outcome: Outcome) -> tuple[str, ...]:
        return issue_for_outcome(store, outcome, signer, mode=mode)

    return issue


def build_service(
    settings: Settings, *, allowed: frozenset[str] | None = None, policy_file: Path | None = None
) -> Service:
    """Wire every part from ``settings``; ``allowed`` overrides the allowlist (CLI scan)."""
    registries = settings.registries if allowed is None else allowed
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    queue = JobQueue(
        db, lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts
    )
    cache = BlobCache(settings.data_dir / "blobs", settings.blob_cache_bytes)
    client = RegistryClient(
        allowed=registries,
        insecure=settings.insecure_registries,
        cache=cache,
        credentials=docker_credentials(),
        redirect_hosts=settings.registry_redirect_hosts,
    )
    trivy = TrivyRunner(
        settings.trivy_path,
        settings.trivy_cache_dir,
        offline=settings.trivy_offline,
        timeout=settings.trivy_timeout,
    )
    policy: RulesPolicy = load_policy(policy_file)
    if settings.max_db_age_hours is not None and policy.rules.max_db_age_hours is None:
        rules = dataclasses.replace(policy.rules, max_db_age_hours=settings.max_db_age_hours)
        policy = RulesPolicy(rules)
    pipeline = Pipeline(
        RegistrySource(client, settings.data_dir / "work"),
        OwnCataloger(settings.data_dir / "sbom-cache"),
        TrivyScanner(trivy),
        SignatureVerifier(client, trust_policy(settings)),
        policy,
    )
    intake = Intake(db, queue, settings)
    gate = Gate(db, client, queue, policy, registries)
    issuer = signing_issuer(settings, client)
    return Service(settings, db, queue, client, pipeline, intake, gate, trivy, issuer)
