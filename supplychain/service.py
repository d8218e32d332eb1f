"""Builds the service's parts from settings: one place that wires the pipeline together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supplychain.config import Settings
from supplychain.database import Database
from supplychain.gate import Gate
from supplychain.intake import Intake
from supplychain.jobs import JobQueue
from supplychain.pipeline import Pipeline
from supplychain.policy import RulesPolicy, load_policy
from supplychain.registry import BlobCache, RegistryClient, RegistrySource, docker_credentials
from supplychain.signatures import CosignTagVerifier
from supplychain.trivy import TrivyCataloger, TrivyRunner, TrivyScanner
from supplychain.worker import Worker

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

    def worker(self, name: str | None = None) -> Worker:
        """A new worker sharing this process's parts."""
        return Worker(self.db, self.queue, self.pipeline, self.client, name)


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
    )
    trivy = TrivyRunner(
        settings.trivy_path,
        settings.trivy_cache_dir,
        offline=settings.trivy_offline,
        timeout=settings.trivy_timeout,
    )
    policy: RulesPolicy = load_policy(policy_file)
    pipeline = Pipeline(
        RegistrySource(client, settings.data_dir / "work"),
        TrivyCataloger(trivy),
        TrivyScanner(trivy),
        CosignTagVerifier(client),
        policy,
    )
    intake = Intake(db, queue, settings)
    gate = Gate(db, client, queue, policy, registries)
    return Service(settings, db, queue, client, pipeline, intake, gate, trivy)
