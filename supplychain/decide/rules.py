"""Policy rules as data, and what each rule finds wrong with an image's evidence.

Pure: evidence and a time in, violations out. Each violation names the rule that found it (the
names a waiver's ``rule`` and ``supplychain policy test`` use) and, for a finding, its advisory
and package, so waivers (:mod:`supplychain.decide.waivers`) can lift exactly it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from packageurl import PackageURL
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from supplychain.decide.licenses import LicenseRule, license_problem
from supplychain.decide.rego import RegoModule
from supplychain.interface import Evidence, Finding, SignatureEvidence

__all__ = [
    "NOT_AFFECTED",
    "RULE_NAMES",
    "SEVERITY_ORDER",
    "AttestationRule",
    "LicenseRule",
    "PackageRule",
    "RuleSet",
    "SignatureRule",
    "SignerRule",
    "Violation",
    "package_matches",
    "violations",
]

SEVERITY_ORDER = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
NOT_AFFECTED = "not_affected"
"""The VEX status that keeps a finding from denying: the image is not affected by it."""
RULE_NAMES = (
    "severity", "cvss", "cves", "packages", "secrets", "signatures", "attestations",
    "registries", "scan_age", "db_age", "licenses", "rego",
)  # fmt: skip


@dataclass(frozen=True)
class SignerRule:
    """Who may have signed: a key by name, or a keyless identity (exact or regexp)."""

    key: str | None = None
    """The trusted key's name as the verifier reports it (exact)."""
    subject: str | None = None
    """Keyless certificate identity, exact."""
    subject_regexp: str | None = None
    """Keyless certificate identity, a full-match regular expression."""
    issuer: str | None = None
    """OIDC issuer, exact."""
    issuer_regexp: str | None = None
    """OIDC issuer, a full-match regular expression."""

    def matches(self, signer: str | None) -> bool:
        """True when a verified signature's ``signer`` is this one."""
        if not signer:
            return False
        if self.key is not None:
            return signer == self.key
        identity, _, issuer = signer.rpartition(" (")
        if not identity or not issuer.endswith(")"):
            return False  # a key name, not "identity (issuer)"
        return _text(identity, self.subject, self.subject_regexp) and _text(
            issuer[:-1], self.issuer, self.issuer_regexp
        )


def _text(value: str, exact: str | None, pattern: str | None) -> bool:
    if exact is not None and value != exact:
        return False
    return pattern is None or re.fullmatch(pattern, value) is not None


@dataclass(frozen=True)
class SignatureRule:
    """At least ``required`` of the listed signers (any verified signer if none listed)."""

    required: int = 1
    """How many distinct signers must have verified signatures."""
    signers: tuple[SignerRule, ...] = ()
    """The trusted signers (M); empty: any verified signature counts."""


@dataclass(frozen=True)
class AttestationRule:
    """A verified attestation of a predicate type must be present."""

    predicate_type: str
    """The in-toto predicate type, exact."""
    signers: tuple[SignerRule, ...] = ()
    """Who must have signed it (any of them); empty: any verified signer."""
    max_age_hours: float | None = None
    """It must have been signed at most this long ago (a verified signing time; an attestation
    without one fails); None: any age."""


@dataclass(frozen=True)
class PackageRule:
    """A package that must not be in the image."""

    purl: str
    """A glob over ``pkg:type/namespace/name`` (no version), e.g. ``pkg:pypi/requests``."""
    versions: str | None = None
    """A version range (PEP 440 specifiers, e.g. ``<2.20``); None: every version."""


@dataclass(frozen=True)
class RuleSet:
    """What the policy checks for one scope."""

    deny_severities: tuple[str, ...] = ("CRITICAL",)
    """A finding of any of these severities denies."""
    fixable_only: bool = False
    """Only findings with a fixed version deny by severity or CVSS."""
    deny_cvss_at_least: float | None = None
    """A finding whose highest CVSS base score is at least this denies."""
    deny_cves: tuple[str, ...] = ()
    """Advisories (ids or aliases) that deny whatever their severity."""
    allow_cves: tuple[str, ...] = ()
    """Advisories (ids or aliases) that never deny."""
    forbidden_packages: tuple[PackageRule, ...] = ()
    """Packages that deny when present."""
    forbidden_licenses: LicenseRule | None = None
    """Licences that deny when a component's licences leave no choice without them."""
    deny_secrets: bool = False
    """Any secret found denies, whatever its severity."""
    signatures: SignatureRule | None = None
    """Signatures required (None: none)."""
    attestations: tuple[AttestationRule, ...] = ()
    """Attestations required."""
    trusted_registries: tuple[str, ...] = ()
    """Glob patterns over the registry host; empty: any registry."""
    trusted_repositories: tuple[str, ...] = ()
    """Glob patterns over ``registry/repository``; empty: any repository."""
    max_scan_age_hours: float | None = None
    """Deny a scan older than this."""
    max_db_age_hours: float | None = None
    """Deny a scan made with an advisory DB older than this."""
    rego: tuple[RegoModule, ...] = ()
    """Custom rules in Rego (their source is part of the policy and of its digest)."""


@dataclass(frozen=True)
class Violation:
    """One thing a rule found wrong."""

    rule: str
    """The rule's name (one of :data:`RULE_NAMES`)."""
    text: str
    """What is wrong, for people."""
    vuln_id: str | None = None
    """The advisory, for a finding."""
    aliases: tuple[str, ...] = ()
    """The advisory's other ids."""
    package: str | None = None
    """The package, for a finding or a forbidden package."""


def _describe(f: Finding) -> str:
    fix = f" (fixed in {f.fixed})" if f.fixed else " (no fix)"
    if f.kind == "secret":
        return f"secret {f.vuln_id} ({f.severity}) in {f.package}"
    return f"{f.severity} {f.vuln_id} in {f.package} {f.installed}{fix}"


def _finding_rule(rules: RuleSet, f: Finding) -> str | None:
    ids = {f.vuln_id, *f.aliases}
    if ids & set(rules.allow_cves):
        return None
    if ids & set(rules.deny_cves):
        return "cves"
    if f.kind == "secret" and rules.deny_secrets:
        return "secrets"
    if rules.fixable_only and f.kind != "secret" and not f.fixed:
        return None
    if f.severity in rules.deny_severities:
        return "severity"
    at_least = rules.deny_cvss_at_least
    if at_least is not None and f.cvss_score is not None and f.cvss_score >= at_least:
        return "cvss"
    return None


def package_matches(rule: PackageRule, purl: str, version: str) -> bool:
    """True when the package ``purl`` at ``version`` is one ``rule`` names (an uncomparable
    version matches: fail closed)."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return False
    base = PackageURL(parsed.type, parsed.namespace, parsed.name).to_string()
    if not fnmatchcase(base, rule.purl):
        return False
    if rule.versions is None:
        return True
    try:
        return Version(version) in SpecifierSet(rule.versions)
    except (InvalidVersion, InvalidSpecifier):
        return True  # a version we cannot compare fails closed: the package is forbidden


def _package_violations(rules: RuleSet, evidence: Evidence) -> list[Violation]:
    found: list[Violation] = []
    for c in evidence.components:
        for rule in rules.forbidden_packages:
            if c.purl and package_matches(rule, c.purl, c.version):
                found.append(Violation("packages", f"forbidden package {c.purl}", package=c.name))
                break
        if rules.forbidden_licenses is not None:
            problem = license_problem(rules.forbidden_licenses, c)
            if problem is not None:
                what = c.purl or f"{c.name} {c.version}"
                found.append(Violation("licenses", f"{problem} in {what}", package=c.name))
    return found


def _signers(sigs: tuple[SignatureEvidence, ...], attestation: bool) -> list[str | None]:
    return [s.signer for s in sigs if s.verified and s.is_attestation == attestation]


def _attestation_violation(
    rule: AttestationRule, evidence: Evidence, now: datetime
) -> Violation | None:
    matching = [
        s
        for s in evidence.signatures
        if s.verified
        and s.is_attestation
        and s.predicate_type == rule.predicate_type
        and (not rule.signers or any(r.matches(s.signer) for r in rule.signers))
    ]
    if not matching:
        return Violation("attestations", f"no verified attestation of {rule.predicate_type}")
    limit = rule.max_age_hours
    if limit is None:
        return None
    times = [s.signed_at for s in matching if s.signed_at is not None]
    if not times:  # fail closed: an age nobody verified is not a young age
        return Violation(
            "attestations",
            f"attestation of {rule.predicate_type}: signing time unknown (no verified "
            f"transparency-log entry or timestamp), so not within {limit:g}h",
        )
    newest = max(times)
    if now - newest > timedelta(hours=limit):
        return Violation(
            "attestations",
            f"attestation of {rule.predicate_type} older than {limit:g}h "
            f"(signed {newest.isoformat()})",
        )
    return None


def _signature_violations(rules: RuleSet, evidence: Evidence, now: datetime) -> list[Violation]:
    found: list[Violation] = []
    need = rules.signatures
    if need is not None:
        signers = _signers(evidence.signatures, False)
        if need.signers:
            met = sum(1 for rule in need.signers if any(rule.matches(s) for s in signers))
        else:
            met = len(set(signers))
        if met < need.required:
            found.append(
                Violation(
                    "signatures",
                    f"{met} of the {need.required} required signers verified",
                )
            )
    for att in rules.attestations:
        problem = _attestation_violation(att, evidence, now)
        if problem is not None:
            found.append(problem)
    return found


def _origin_violations(rules: RuleSet, evidence: Evidence) -> list[Violation]:
    subject = evidence.subject or ""
    host = subject.split("/", 1)[0]
    if rules.trusted_registries and not any(fnmatchcase(host, p) for p in rules.trusted_registries):
        return [Violation("registries", f"registry {host or 'unknown'} is not trusted")]
    if rules.trusted_repositories and not any(
        fnmatchcase(subject, p) for p in rules.trusted_repositories
    ):
        return [Violation("registries", f"repository {subject or 'unknown'} is not trusted")]
    return []


def _age_violations(rules: RuleSet, evidence: Evidence, now: datetime) -> list[Violation]:
    found: list[Violation] = []
    scan = evidence.scan
    if scan is None:
        return found
    for rule, limit, at, what in (
        ("scan_age", rules.max_scan_age_hours, scan.scanned_at, "scan"),
        ("db_age", rules.max_db_age_hours, scan.db_updated_at, "advisory DB"),
    ):
        if limit is not None and (at is None or now - at > timedelta(hours=limit)):
            when = "updated" if rule == "db_age" else "made"
            found.append(
                Violation(rule, f"{what} older than {limit:g}h ({when} {at or 'unknown'})")
            )
    return found


def violations(rules: RuleSet, evidence: Evidence, now: datetime) -> list[Violation]:
    """Everything ``rules`` find wrong with ``evidence`` (VEX already matched) at ``now``."""
    found = _origin_violations(rules, evidence)
    if evidence.scan is not None:
        for f in evidence.scan.findings:
            if f.vex_status == NOT_AFFECTED:  # a VEX statement (kept, shown, not denying)
                continue
            rule = _finding_rule(rules, f)
            if rule is not None:
                found.append(Violation(rule, _describe(f), f.vuln_id, f.aliases, f.package))
    found += _package_violations(rules, evidence)
    found += _age_violations(rules, evidence, now)
    found += _signature_violations(rules, evidence, now)
    return found
