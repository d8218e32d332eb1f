"""Builds the service's parts from settings: one place that wires the pipeline together."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from supplychain.access.tokens import TokenStore
from supplychain.config import Settings
from supplychain.decide.decider import Decider
from supplychain.decide.gate import Gate
from supplychain.decide.policy import RulesPolicy, load_policy
from supplychain.evidence.database import Database
from supplychain.evidence.groupcommit import GroupCommit, insert_facts
from supplychain.intake.webhooks import Intake
from supplychain.interface import Verdict
from supplychain.queue.jobs import Backoff, JobQueue
from supplychain.queue.worker import IndexLimits, Issuer, Worker
from supplychain.reconcile import Reconciler
from supplychain.reference import ImageReference
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
    decider: Decider
    tokens: TokenStore
    issuer: Issuer | None = None

    def worker(
        self, name: str | None = None, *, on_job_done: Callable[[], None] | None = None
    ) -> Worker:
        """A new worker sharing this process's parts; ``on_job_done`` runs after each job."""
        limits = IndexLimits(self.settings.index_max_entries, self.settings.index_max_depth)
        return Worker(
            self.db,
            self.queue,
            self.pipeline,
            self.client,
            self.decider,
            name,
            issuer=self.issuer,
            limits=limits,
            deadlines=dict(self.settings.stage_deadlines),
            on_job_done=on_job_done,
        )

    def reconciler(self, stop: threading.Event | None = None) -> Reconciler:
        """A reconcile pass over the allowlisted registries, with this process's parts."""
        settings = self.settings
        return Reconciler(
            self.db,
            self.queue,
            self.client,
            self.client.allowed,
            repositories=settings.reconcile_repositories,
            page_size=settings.reconcile_page_size,
            rate=settings.reconcile_rate,
            stop=stop,
        )


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

    def issue(outcome: Outcome, verdict: Verdict) -> tuple[str, ...]:
        return issue_for_outcome(store, outcome, verdict, signer, mode=mode)

    return issue


def tag_resolver(client: RegistryClient) -> Callable[[ImageReference], tuple[str, str]]:
    """Resolves a webhook's tag-only push at the registry (the client refuses hosts outside the
    allowlist): the digest and media type of the manifest the tag names now."""

    def resolve(ref: ImageReference) -> tuple[str, str]:
        found = client.resolve(ref)
        return found.digest, found.media_type

    return resolve


def build_service(
    settings: Settings, *, allowed: frozenset[str] | None = None, policy_file: Path | None = None
) -> Service:
    """Wire every part from ``settings``; ``allowed`` overrides the allowlist (CLI scan)."""
    registries = settings.registries if allowed is None else allowed
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    queue = JobQueue(
        db,
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
        backoff=Backoff(
            base=settings.job_backoff_seconds,
            cap=settings.job_backoff_max_seconds,
            window=settings.job_retry_window_seconds,
            failed_retry=settings.job_failed_retry_seconds,
        ),
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
    policy = load_policy(policy_file)
    if (
        isinstance(policy, RulesPolicy)
        and settings.max_db_age_hours is not None
        and policy.rules.max_db_age_hours is None
    ):
        rules = dataclasses.replace(policy.rules, max_db_age_hours=settings.max_db_age_hours)
        policy = RulesPolicy(rules)
    pipeline = Pipeline(
        RegistrySource(client, settings.data_dir / "work"),
        OwnCataloger(settings.data_dir / "sbom-cache"),
        TrivyScanner(trivy),
        SignatureVerifier(client, trust_policy(settings)),
    )
    decider = Decider(policy, max_depth=settings.index_max_depth)
    tokens = TokenStore(db, settings.token_pepper)
    intake = Intake(db, queue, settings, tokens, resolver=tag_resolver(client))
    # The gate's answers: flushed per batch, or (gate_commit=fast) on a second engine whose
    # commits do not wait for the flush (docs/operations.md, "The gate under load").
    answers = db if settings.gate_commit == "durable" else Database(db.url, flush=False)
    gate = Gate(
        db,
        client,
        queue,
        decider,
        registries,
        recorder=GroupCommit(
            answers.writing,
            insert_facts,
            name="gate",
            inline=answers.writing_now if answers.writes_now else None,
        ),
    )
    issuer = signing_issuer(settings, client)
    return Service(
        settings, db, queue, client, pipeline, intake, gate, trivy, decider, tokens, issuer
    )
