"""Policy files on real scanned images: each rule kind allows and denies, scopes, errors, waivers.

Two images on the real registry, scanned once by a real in-process worker with real Trivy and a
test-built DB, recorded in PostgreSQL: ``app`` (CRITICAL CVE-2018-18074 in requests 2.19.0 with
its GHSA alias, HIGH findings, a MEDIUM lodash finding with a CVSS score, a LOW zlib finding
without a fix), signed by key A and attested by key A; and ``secret`` (a GitHub token in a
file). Each policy below is read from a YAML file and decided with the one decision function
on the facts loaded back, as the gate does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from supplychain.cli.main import main
from supplychain.decide.decider import Decider
from supplychain.decide.decision import ImageFacts, decide
from supplychain.decide.policyfile import read_policy
from supplychain.decide.waiverstore import WaiverRequest, create, revoke
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.models import utcnow
from supplychain.interface import ImageTarget, PolicyError, SignatureEvidence
from supplychain.rematch.run import Rematcher, TrivySbomMatcher
from supplychain.service import Service, build_service
from supplychain.signatures import KeyFileSigner, attest_image, generate_key, public_pem, sign_image
from supplychain.signatures.keys import key_id
from supplychain.signatures.statements import statement
from supplychain.signatures.storage import SignatureStore
from tests.conftest import make_settings, truncate
from tests.support import images
from tests.support.registry import Registry
from tests.support.trivydb import Advisory
from tests.test_keyless import IDENTITY, ISSUER, private_sigstore
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, UPDATED, install_db, secret_layout

ALIAS = "GHSA-x84v-xcm2-53pg"
PROVENANCE = "https://example.test/provenance/v1"
ADVISORIES = (
    *(
        replace(a, cvss_v3_score=7.4) if a.vuln_id == "CVE-2020-8203" else a
        for a in BASE_ADVISORIES
    ),
    replace(NEW_ADVISORY, vendor_ids=(ALIAS,)),
    Advisory("CVE-2099-0101", "debian 12", "zlib", "LOW"),  # no fixed version
)


@dataclass
class World:
    service: Service
    host: str
    app: ImageFacts
    secret: ImageFacts
    key_a: str
    key_b: str
    tmp: Path
    pg_url: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("policy")
    database = Database(pg_url)
    truncate(database)
    database.dispose()
    with Registry(tmp / "registry") as registry:
        app = images.push(images.app_layout(), "app", f"{registry.host}/team/app:app")
        secret = images.push(
            secret_layout(tmp / "secret-layout"), "secret", f"{registry.host}/team/secret:s"
        )
        key_a, key_b = generate_key(), generate_key()
        (tmp / "a.pub").write_bytes(public_pem(key_a.public_key()))
        (tmp / "b.pub").write_bytes(public_pem(key_b.public_key()))
        install_db(tmp / "trivy", ADVISORIES, tmp)
        keys = f"{tmp / 'a.pub'},{tmp / 'b.pub'}"
        settings = make_settings(tmp, pg_url, registries=registry.host, verify_keys=keys)
        service = build_service(settings)
        target = ImageTarget(registry.host, "team/app", app, "app")
        store = SignatureStore(service.client)
        sign_image(store, target, KeyFileSigner(key_a))
        claim = statement(target, PROVENANCE, {"builder": {"id": "https://ci.example.test"}})
        attest_image(store, target, KeyFileSigner(key_a), claim, PROVENANCE)
        with service.db.session() as session:
            service.queue.enqueue(session, "image", target)
            service.queue.enqueue(
                session, "image", ImageTarget(registry.host, "team/secret", secret, "s")
            )
        worker = service.worker("test")
        assert worker.run_once() and worker.run_once()
        with service.db.session() as session:
            rows = {i.repository: i for i in session.scalars(select(models.Image))}
            app_facts = service.decider.load(session, rows["team/app"])
            secret_facts = service.decider.load(session, rows["team/secret"])
        assert isinstance(app_facts, ImageFacts) and isinstance(secret_facts, ImageFacts)
        yield World(
            service, registry.host, app_facts, secret_facts,
            key_id(key_a.public_key()), key_id(key_b.public_key()), tmp, pg_url,
        )  # fmt: skip
        service.db.dispose()


def policy_file(tmp: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def rules(**keys: object) -> str:
    """A v1 policy with these default rules (JSON is YAML)."""
    return json.dumps({"apiVersion": "supplychain.dev/v1", "name": "t", "rules": keys})


def verdict_of(
    world: World, text: str, image: str = "app", now: datetime | None = None
) -> tuple[str, list[str]]:
    policy = read_policy(policy_file(world.tmp, text))
    facts = world.app if image == "app" else world.secret
    verdict = decide(facts, policy, now or utcnow())
    assert verdict.policy_digest == policy.digest  # the policy's digest is in every verdict
    rules_hit = verdict.details.get("rules", [])
    assert isinstance(rules_hit, list)
    return verdict.decision, [str(r) for r in rules_hit]


def test_the_scan_has_what_the_rules_read(world: World) -> None:
    scan = world.app.evidence.scan
    assert scan is not None
    by_id = {f.vuln_id: f for f in scan.findings}
    assert by_id["CVE-2020-8203"].cvss_score == 7.4
    assert ALIAS in by_id["CVE-2018-18074"].aliases
    assert by_id["CVE-2099-0101"].fixed is None
    secret_scan = world.secret.evidence.scan
    assert secret_scan is not None and {f.kind for f in secret_scan.findings} == {"secret"}


CASES = {
    # rule: (allowing rules, denying rules, image)
    "severity": ({"severities": ["UNKNOWN"]}, {"severities": ["HIGH"]}, "app"),
    "fixable_only": (
        {"severities": ["LOW"], "fixable_only": True},
        {"severities": ["LOW"]},
        "app",
    ),
    "cvss": (
        {"severities": [], "cvss_at_least": 8.0},
        {"severities": [], "cvss_at_least": 7.0},
        "app",
    ),
    "cves deny": (
        {"severities": [], "cves": {"deny": ["CVE-2000-0001"]}},
        {"severities": [], "cves": {"deny": ["CVE-2020-8203"]}},
        "app",
    ),
    "cves allow (by alias)": (
        {"severities": ["CRITICAL"], "cves": {"allow": [ALIAS]}},
        {"severities": ["CRITICAL"], "cves": {"allow": ["CVE-2000-0001"]}},
        "app",
    ),
    "packages": (
        {"severities": [], "packages": [{"purl": "pkg:pypi/requests", "versions": ">=2.20"}]},
        {"severities": [], "packages": [{"purl": "pkg:pypi/req*", "versions": "<2.20"}]},
        "app",
    ),
    "secrets": (
        {"severities": [], "secrets": "severity"},
        {"severities": [], "secrets": "deny"},
        "secret",
    ),
    "max_scan_age_hours": (
        {"severities": [], "max_scan_age_hours": 1},
        {"severities": [], "max_scan_age_hours": 0.0001},
        "app",
    ),
    "max_db_age_hours": (
        {"severities": [], "max_db_age_hours": 24 * 365 * 10},
        {"severities": [], "max_db_age_hours": 1},
        "app",
    ),
}
RULE_OF = {
    "fixable_only": "severity", "cves deny": "cves", "cves allow (by alias)": "severity",
    "max_scan_age_hours": "scan_age", "max_db_age_hours": "db_age",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_kind_allows_and_denies(world: World, case: str) -> None:
    allowing, denying, image = CASES[case]
    if case == "max_scan_age_hours":
        time.sleep(0.5)  # the scan is now older than 0.0001h
    assert verdict_of(world, rules(**allowing), image) == ("allow", [])
    assert verdict_of(world, rules(**denying), image) == ("deny", [RULE_OF.get(case, case)])


def test_db_age_is_measured_from_the_db_update(world: World) -> None:
    text = rules(severities=[], max_db_age_hours=48)
    assert verdict_of(world, text, now=UPDATED + timedelta(hours=47))[0] == "allow"
    assert verdict_of(world, text, now=UPDATED + timedelta(hours=49))[0] == "deny"


def test_signatures_n_of_m(world: World) -> None:
    signers = [{"key": world.key_a}, {"key": world.key_b}]
    one = rules(severities=[], signatures={"required": 1, "signers": signers})
    two = rules(severities=[], signatures={"required": 2, "signers": signers})
    only_b = rules(severities=[], signatures={"signers": [{"key": world.key_b}]})
    assert verdict_of(world, one) == ("allow", [])
    assert verdict_of(world, two) == ("deny", ["signatures"])
    assert verdict_of(world, only_b) == ("deny", ["signatures"])
    assert verdict_of(world, two, "secret") == ("deny", ["signatures"])  # not signed at all


def test_attestations_type_and_signer(world: World) -> None:
    def att(predicate: str, key: str) -> str:
        spec = [{"predicate_type": predicate, "signers": [{"key": key}]}]
        return rules(severities=[], attestations=spec)

    assert verdict_of(world, att(PROVENANCE, world.key_a)) == ("allow", [])
    assert verdict_of(world, att(PROVENANCE, world.key_b)) == ("deny", ["attestations"])
    assert verdict_of(world, att("https://slsa.dev/provenance/v1", world.key_a))[0] == "deny"


def test_trusted_registries_and_repositories(world: World) -> None:
    host = world.host
    assert verdict_of(world, rules(severities=[], registries=[host])) == ("allow", [])
    assert verdict_of(world, rules(severities=[], registries=["ghcr.io"])) == (
        "deny",
        ["registries"],
    )
    assert verdict_of(world, rules(severities=[], repositories=[f"{host}/team/*"]))[0] == "allow"
    assert verdict_of(world, rules(severities=[], repositories=[f"{host}/other/*"]))[0] == "deny"


def test_the_most_specific_scope_wins(world: World) -> None:
    text = json.dumps(
        {
            "apiVersion": "supplychain.dev/v1",
            "rules": {"severities": ["UNKNOWN"]},
            "scopes": [
                {"match": f"{world.host}/*", "rules": {"severities": ["CRITICAL"]}},
                {"match": f"{world.host}/team/app", "rules": {"severities": ["UNKNOWN"]}},
            ],
        }
    )
    assert verdict_of(world, text, "app") == (
        "allow",
        [],
    )  # exact name beats host/*, though written later
    assert verdict_of(world, text, "secret")[0] == "deny"  # only host/* matches: CRITICAL denies
    policy = read_policy(policy_file(world.tmp, text))
    assert decide(world.app, policy, utcnow()).details["scope"] == f"{world.host}/team/app"


def test_old_format_still_works_with_a_deprecation(world: World) -> None:
    old = policy_file(world.tmp, "deny_severities: [HIGH]\nrequire_signature: true\n", "old.yaml")
    with pytest.warns(FutureWarning, match="old.yaml: policy without apiVersion"):
        policy = read_policy(old)
    assert decide(world.app, policy, utcnow()).decision == "deny"
    assert decide(world.secret, policy, utcnow()).reasons[-1].endswith("required signers verified")


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("apiVersion: supplychain.dev/v1\nrules:\n  severities: [HIGH]\n  fixable: true\n", 4,
         "rules.fixable"),
        ("apiVersion: supplychain.dev/v1\nrules:\n  severities: [HIHG]\n", 3, "rules.severities"),
        ("apiVersion: supplychain.dev/v1\nscopes:\n  - match: a/*\n    rules:\n"
         "      packages:\n        - purl: pkg:pypi/x\n          versions: '=>1'\n", 7,
         "scopes[0].rules.packages[0].versions"),
        ("apiVersion: supplychain.dev/v2\n", 1, "apiVersion"),
        ("deny_severities: [HIGH]\nrequire_signatures: true\n", 2, "require_signatures"),
    ],
)  # fmt: skip
def test_a_policy_error_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = policy_file(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        read_policy(path)
    assert str(caught.value).startswith(f"{path}:{line}: {key}:")
    assert main(["policy", "test", str(path)]) == 2


def _waiver(world: World, expires: datetime) -> int:
    with world.service.db.session(write=True) as session:
        made = create(
            session,
            WaiverRequest(
                owner="alice",
                reason="no redirect to other hosts",
                ticket="SEC-1",
                expires_at=expires,
                repository=f"{world.host}/team/*",
                cve=ALIAS,
            ),
            "alice",
            utcnow(),
        )
    return int(made["id"])


def _three(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str, str]:
    ref = f"{world.host}/team/app:app"
    gate = world.service.gate.decide(ref)
    with world.service.db.session() as session:
        scan_ids = list(session.scalars(select(models.Scan.id).order_by(models.Scan.id)))
    rematcher = Rematcher(
        world.service.db, TrivySbomMatcher(world.service.trivy), world.service.decider
    )
    rematcher.run(scan_ids)
    with world.service.db.session() as session:
        rematched = session.scalars(
            select(models.Verdict.decision)
            .where(models.Verdict.context == "rematch", models.Verdict.digest == world.app.digest)
            .order_by(models.Verdict.id.desc())
            .limit(1)
        ).one()
    monkeypatch.setenv("SUPPLYCHAIN_DATABASE_URL", world.pg_url)
    monkeypatch.setenv("SUPPLYCHAIN_DATA_DIR", str(world.tmp / "data"))
    default = policy_file(world.tmp, rules(severities=["CRITICAL"]), "critical.yaml")
    capsys.readouterr()
    code = main(["policy", "test", str(default), "--image", ref])
    cli = json.loads(capsys.readouterr().out)
    assert code == (0 if cli["decision"] == "allow" else 1)
    assert gate.decision == "allow" or any("CVE-2018-18074" in r for r in gate.reasons)
    return gate.decision, str(rematched), str(cli["decision"])


def test_a_waiver_allows_until_it_expires_in_gate_rematch_and_cli(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _three(world, monkeypatch, capsys) == ("deny", "deny", "deny")
    expires = utcnow() + timedelta(seconds=8)
    waiver = _waiver(world, expires)
    ref = f"{world.host}/team/app:app"
    answer = world.service.gate.decide(ref)
    assert answer.decision == "allow"
    assert any(
        r.startswith(f"waived by waiver {waiver} ({ALIAS}; owner alice; ticket SEC-1")
        for r in answer.reasons
    )
    assert _three(world, monkeypatch, capsys) == ("allow", "allow", "allow")
    with world.service.db.session() as session:  # the CLI recorded nothing
        before = session.scalar(select(func.count()).select_from(models.Verdict))
    default = policy_file(world.tmp, rules(severities=["CRITICAL"]), "critical.yaml")
    at = (expires - timedelta(milliseconds=1)).isoformat()
    assert main(["policy", "test", str(default), "--image", ref, "--at", at]) == 0
    assert main(["policy", "test", str(default), "--image", ref, "--at", expires.isoformat()]) == 1
    with world.service.db.session() as session:
        assert session.scalar(select(func.count()).select_from(models.Verdict)) == before
    time.sleep(max(0.0, (expires - utcnow()).total_seconds()) + 0.05)
    assert _three(world, monkeypatch, capsys) == ("deny", "deny", "deny")


def test_waivers_by_rule_and_package_scoped_to_the_digest(world: World) -> None:
    text = rules(
        severities=[],
        signatures={"required": 2, "signers": [{"key": world.key_a}, {"key": world.key_b}]},
        packages=[{"purl": "pkg:pypi/requests"}],
    )
    policy = read_policy(policy_file(world.tmp, text))
    now = utcnow()
    expires = now + timedelta(hours=1)
    with world.service.db.session(write=True) as session:
        made = [
            create(
                session,
                WaiverRequest("bob", "onboarding", "SEC-2", expires, world.app.digest, **what),
                "bob",
                now,
            )
            for what in ({"rule": "signatures"}, {"package": "requests"})
        ]
    with world.service.db.session() as session:
        rows = {i.repository: i for i in session.scalars(select(models.Image))}
        app = world.service.decider.load(session, rows["team/app"])
        secret = world.service.decider.load(session, rows["team/secret"])
    assert isinstance(app, ImageFacts) and isinstance(secret, ImageFacts)
    assert decide(world.app, policy, now).details["rules"] == ["packages", "signatures"]
    waived = decide(app, policy, now)
    assert waived.decision == "allow"
    assert sum(r.startswith("waived by waiver") for r in waived.reasons) == 2
    assert decide(app, policy, expires).details["rules"] == ["packages", "signatures"]
    assert decide(secret, policy, now).details["rules"] == ["signatures"]  # other digest
    with world.service.db.session(write=True) as session:
        for waiver in made:
            revoke(session, int(waiver["id"]), "bob", utcnow())


def test_every_platform_or_the_deployed_platform(world: World) -> None:
    layout = images.index_layout(world.tmp / "multi", {"linux/amd64": "app", "linux/arm64": "base"})
    images.push(layout, "multi", f"{world.host}/team/multi:multi")
    ref = f"{world.host}/team/multi:multi"
    world.service.gate.decide(ref)  # queues the index, which queues its platform images
    worker = world.service.worker("test")
    while worker.run_once():
        pass
    with world.service.db.session() as session:
        index = session.scalars(
            select(models.Image).where(
                models.Image.repository == "team/multi", models.Image.expanded_at.is_not(None)
            )
        ).one()
        facts = world.service.decider.load(session, index)
    deployed = read_policy(policy_file(world.tmp, rules(severities=["CRITICAL"])))
    every = json.dumps(
        {
            "apiVersion": "supplychain.dev/v1",
            "platforms": "all",
            "rules": {"severities": ["CRITICAL"]},
        }
    )
    every_platform = read_policy(policy_file(world.tmp, every, "every.yaml"))
    now = utcnow()
    assert Decider(deployed).decide(facts, platform="linux/arm64", now=now).decision == "allow"
    assert Decider(deployed).decide(facts, platform="linux/amd64", now=now).decision == "deny"
    verdict = Decider(every_platform).decide(facts, platform="linux/arm64", now=now)
    assert verdict.decision == "deny" and verdict.details["rules"] == ["severity"]
    assert any(r.startswith("linux/amd64: CRITICAL CVE-2018-18074") for r in verdict.reasons)
    assert deployed.digest != every_platform.digest


def test_keyless_signers_exact_and_regexp(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A keyless signature verified for real against a private Sigstore (fake Fulcio and Rekor:
    the public ones are unreachable here), its signer as the verifier reports it."""
    sigstore = private_sigstore(tmp_path_factory)
    result = sigstore.verify(sigstore.sign())
    assert result.verified and result.signer
    found = SignatureEvidence("cosign-tag", "ref", world.app.digest, True, "ok", result.signer)
    facts = replace(world.app, evidence=replace(world.app.evidence, signatures=(found,)))

    def with_signer(**signer: str) -> str:
        return rules(severities=[], signatures={"signers": [signer]})

    def decision(text: str) -> str:
        return decide(facts, read_policy(policy_file(world.tmp, text)), utcnow()).decision

    assert decision(with_signer(subject=IDENTITY, issuer=ISSUER)) == "allow"
    assert (
        decision(with_signer(subject_regexp=r"https://github\.com/acme/.+", issuer=ISSUER))
        == "allow"
    )
    assert decision(with_signer(subject=IDENTITY, issuer="https://evil.example")) == "deny"
    assert decision(with_signer(subject_regexp=r"https://github\.com/acme")) == "deny"  # full match
    assert decision(with_signer(key=world.key_a)) == "deny"
