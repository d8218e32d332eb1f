"""The pipeline's roles, one small interface each: source → cataloger → scanner → verifier → policy.

Data flows one way: each stage takes what the stages before it produced and returns a frozen
value. Each role has its own error type; a stage that cannot do its work raises it, and the job
fails with that reason (it never turns into an "allow").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Decision = Literal["allow", "deny", "pending"]


@dataclass(frozen=True)
class ImageTarget:
    """One single-platform image manifest to process."""

    registry: str
    """Registry host with optional port, as in the allowlist."""
    repository: str
    """Repository path inside the registry."""
    digest: str
    """Digest of the image manifest, ``sha256:<hex>``."""
    tag: str | None = None
    """The tag the image was pushed or asked for under, if any."""

    @property
    def pinned(self) -> str:
        """``registry/repository@digest``."""
        return f"{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Layer:
    """One layer of a pulled image."""

    digest: str
    """Digest of the (compressed) layer blob."""
    media_type: str
    """Layer media type as the manifest states it."""
    size: int
    """Size in bytes of the blob."""
    path: Path
    """The verified blob in the content-addressed cache."""
    plain: Path | None = None
    """The layer as an uncompressed tar, inflated while it was pulled and hashed to the diff_id
    the image config states for it; None when there is none (see supplychain.registry.inflate)."""


@dataclass(frozen=True)
class PulledImage:
    """An image pulled by digest, every blob verified, laid out as an OCI image layout on disk."""

    target: ImageTarget
    """What was pulled."""
    media_type: str
    """Media type of the image manifest."""
    manifest: bytes
    """The exact manifest bytes whose SHA-256 is ``target.digest``."""
    config: bytes
    """The exact image config bytes (verified against the manifest)."""
    platform: str | None
    """``os/arch[/variant]`` from the config, when it states one."""
    layers: tuple[Layer, ...]
    """Layers, bottom first."""
    layout_dir: Path
    """An OCI image layout holding this image alone, for tools that read one (Trivy)."""


@dataclass(frozen=True)
class Component:
    """One package found in an image."""

    name: str
    """Package name as its ecosystem spells it."""
    version: str
    """Installed version."""
    purl: str | None
    """Package URL, when one can be formed."""
    type: str
    """Ecosystem or cataloger kind, e.g. ``deb``, ``pypi``, ``npm``."""
    layer_digest: str | None = None
    """Digest of the layer that brought the package, when known."""
    path: str | None = None
    """Path of the file the package was read from, when known."""
    source_name: str | None = None
    """The source package an OS package was built from (deb ``Source:``, rpm source rpm)."""
    licenses: tuple[str, ...] = ()
    """Licences the package states (SPDX ids or expressions where it uses them); all apply."""


@dataclass(frozen=True)
class Sbom:
    """A software bill of materials for one image."""

    format: str
    """Document format, e.g. ``cyclonedx-json``."""
    document: bytes
    """The whole document as produced."""
    components: tuple[Component, ...]
    """The packages the document lists."""
    generator: str
    """Tool and version that made it."""
    warnings: tuple[str, ...] = ()
    """Files that could not be read (malformed, hostile), ``path: problem``; the rest is in it."""


@dataclass(frozen=True)
class Finding:
    """One vulnerability affecting one package of an image."""

    vuln_id: str
    """Advisory id, e.g. ``CVE-2023-1234`` or ``GHSA-…``."""
    package: str
    """Affected package name."""
    purl: str | None
    """Package URL of the affected package."""
    installed: str
    """Installed version."""
    fixed: str | None
    """First fixed version(s), if any."""
    severity: str
    """UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL."""
    status: str | None = None
    """Advisory status (fixed, affected, will_not_fix, …)."""
    title: str | None = None
    """Short title of the advisory."""
    data_source: str | None = None
    """Advisory source id, e.g. ``ghsa`` or ``debian``."""
    layer_digest: str | None = None
    """Layer the package came from."""
    aliases: tuple[str, ...] = ()
    """Other ids of the same advisory (GHSA, DSA …): a VEX statement may name any of them."""
    cvss_score: float | None = None
    """The highest CVSS base score any source gives (None when none does)."""
    kind: str = "vulnerability"
    """``vulnerability``, or ``secret`` for a secret found in a layer's file."""
    vex_status: str | None = None
    """What a VEX statement says of this finding (``not_affected``…); None when none applies.
    Set only by the decision (:func:`supplychain.decide.decision.decide`), never stored."""
    vex_justification: str | None = None
    """The matching VEX statement's justification, as written."""


@dataclass(frozen=True)
class ScanResult:
    """What a vulnerability scanner reported for one image."""

    scanner: str
    """Scanner name."""
    scanner_version: str
    """Scanner version."""
    db_updated_at: datetime | None
    """``UpdatedAt`` of the advisory DB the scan used."""
    db_digest: str | None
    """SHA-256 of the advisory DB file the scan used."""
    findings: tuple[Finding, ...]
    """Findings, one per (advisory, package)."""
    report: bytes = b""
    """The scanner's raw report."""
    scanned_at: datetime | None = None
    """When the scan finished (as recorded; None before it is recorded)."""


@dataclass(frozen=True)
class SignatureEvidence:
    """A signature or attestation found for an image, and what checking it showed."""

    kind: str
    """How it is stored, e.g. ``cosign-tag`` for the ``sha256-<hex>.sig`` scheme."""
    reference: str
    """Where it was found (``registry/repo:tag`` or ``@digest``)."""
    digest: str
    """Digest of the manifest or blob holding it."""
    verified: bool
    """True only when the signature was checked against a trusted key or identity."""
    reason: str
    """Why it is (not) verified."""
    signer: str | None = None
    """Key id or certificate identity, when known."""
    payload: bytes = b""
    """The signed payload, stored whole."""
    predicate_type: str | None = None
    """For attestations: the in-toto predicate type (only trustworthy when ``verified``)."""
    signed_at: datetime | None = None
    """When it was signed, from a verified Rekor entry or RFC 3161 timestamp; None when nothing
    verified states it (e.g. a key-signed cosign attestation without a transparency log)."""

    @property
    def is_attestation(self) -> bool:
        """True for attestations (kinds ``attestation:…``), which are not image signatures."""
        return self.kind.startswith("attestation:")


@dataclass(frozen=True)
class Waiver:
    """An accepted exception to the policy, until it expires."""

    id: int
    """Its id."""
    digest: str | None
    """The image digest it is scoped to (this or ``repository``)."""
    repository: str | None
    """A ``registry/repository`` glob pattern it is scoped to (this or ``digest``)."""
    cve: str | None
    """The advisory id (or alias) it waives (one of ``cve``, ``package``, ``rule``)."""
    package: str | None
    """The package name it waives."""
    rule: str | None
    """The policy rule it waives (e.g. ``signatures``)."""
    owner: str
    """Who owns the risk."""
    reason: str
    """Why it is accepted."""
    ticket: str
    """The tracking ticket."""
    expires_at: datetime
    """It stops applying at this instant."""
    justification: str | None = None
    """Optional VEX justification (e.g. ``vulnerable_code_not_in_execute_path``)."""


@dataclass(frozen=True)
class ImageConfig:
    """What an image's config says about how it runs (environment values are not kept)."""

    user: str
    """``User`` as written ('' when unset: the image runs as root)."""
    exposed_ports: tuple[str, ...] = ()
    """``ExposedPorts`` keys, e.g. ``8080/tcp``."""
    env_names: tuple[str, ...] = ()
    """Names of the ``Env`` variables (their values may be secrets: never stored)."""
    entrypoint: tuple[str, ...] = ()
    """``Entrypoint``."""
    cmd: tuple[str, ...] = ()
    """``Cmd``."""
    working_dir: str = ""
    """``WorkingDir``."""
    labels: tuple[tuple[str, str], ...] = ()
    """``Labels``, sorted by name."""

    def as_json(self) -> dict[str, Any]:
        """As JSON: stored in ``scans.image_config``, and the Rego input's ``config``."""
        return {
            "user": self.user,
            "exposed_ports": list(self.exposed_ports),
            "env_names": list(self.env_names),
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "working_dir": self.working_dir,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Evidence:
    """Everything the policy sees about one image."""

    image: PulledImage | None
    """The pulled image, or None when it could not be pulled."""
    sbom: Sbom | None
    """SBOM, or None when none was made."""
    scan: ScanResult | None
    """Scan, or None when the image is not (yet) scanned."""
    signatures: tuple[SignatureEvidence, ...] = ()
    """Signatures and attestations found."""
    subject: str | None = None
    """``registry/repository`` the image was recorded under (scopes policy rules and waivers)."""
    digest: str | None = None
    """The image manifest's digest (waivers may be scoped to it)."""
    components: tuple[Component, ...] = ()
    """The packages of its SBOM as recorded (forbidden-package rules read them)."""
    waivers: tuple[Waiver, ...] = ()
    """Waivers recorded for this image, revoked ones left out; the policy compares expiry
    with the decision's time."""
    config: ImageConfig | None = None
    """What the image's config says (None when not recorded: images scanned before it was)."""


@dataclass(frozen=True)
class Verdict:
    """A policy decision with its reasons."""

    decision: Decision
    """allow, deny or pending."""
    reasons: tuple[str, ...]
    """Human-readable reasons; a deny always has at least one."""
    policy: str
    """Policy name."""
    policy_digest: str
    """SHA-256 of the policy's definition, so auditors know which rules decided."""
    evaluated_at: datetime | None = None
    """When the policy was evaluated."""
    details: dict[str, object] = field(default_factory=dict, compare=False)
    """Structured extras (counts per severity…)."""


class SourceError(Exception):
    """An image could not be pulled or did not verify."""


class CatalogError(Exception):
    """An SBOM could not be made."""


class ScanError(Exception):
    """A vulnerability scan could not be run or its output could not be read."""


class VerifyError(Exception):
    """Signatures could not be looked up (not: a signature did not verify, which is evidence)."""


class PolicyError(Exception):
    """A policy could not be evaluated."""


class ImageSource(ABC):
    """Pulls one image by digest, verifying every fetched byte."""

    @abstractmethod
    def pull(self, target: ImageTarget) -> PulledImage:
        """Pull ``target``; raise :class:`SourceError` on any failure."""


class Cataloger(ABC):
    """Makes an SBOM of a pulled image."""

    @abstractmethod
    def catalog(self, image: PulledImage) -> Sbom:
        """Catalogue ``image``; raise :class:`CatalogError` on failure."""


class Scanner(ABC):
    """Finds known vulnerabilities of a pulled image."""

    uses_sbom: bool = True
    """Whether :meth:`scan` reads our SBOM; when not, it runs while the SBOM is made (and gets
    ``None``)."""

    @abstractmethod
    def scan(self, image: PulledImage, sbom: Sbom | None) -> ScanResult:
        """Scan ``image`` (with its SBOM when :attr:`uses_sbom`); raise :class:`ScanError` on
        failure."""


class Verifier(ABC):
    """Finds and checks the signatures and attestations an image carries."""

    @abstractmethod
    def verify(self, image: PulledImage) -> tuple[SignatureEvidence, ...]:
        """Look up and check signatures of ``image``; raise :class:`VerifyError` if lookup fails."""


class Policy(ABC):
    """Decides allow, deny or pending from evidence."""

    name: str
    every_platform: bool = False
    """True: an image index passes only when every platform image passes, even when the caller
    names the platform it deploys; False: the deployed platform's image must pass."""

    @property
    @abstractmethod
    def digest(self) -> str:
        """SHA-256 of the policy definition."""

    @abstractmethod
    def evaluate(self, evidence: Evidence, now: datetime) -> Verdict:
        """Decide on ``evidence`` at time ``now`` (VEX already matched); raise
        :class:`PolicyError` on failure. Called only by :mod:`supplychain.decide.decision`."""
