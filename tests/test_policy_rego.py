"""Rego rules, licence rules and attestations' maximum age on a real scanned image.

The ``app`` image of :mod:`tests.test_policy_rules` (same advisories) on the real registry, signed
and attested with key A (a cosign ``.att`` without a timestamp: its signing time is unknown), and
attested keyless through a private Sigstore (fake Fulcio and Rekor: the public ones are
unreachable here) whose Rekor SET states a signing time three hours ago. One real worker with
real Trivy records it, on PostgreSQL and on SQLite; each policy is read from files and decided
with the one decision function on the facts loaded back, as the gate does.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from supplychain.cli.main import main
from supplychain.decide.decider import Decider
from supplychain.decide.decision import ImageFacts, decide
from supplychain.decide.policyfile import read_policy
from supplychain.decide.regoinput import INPUT_VERSION
from supplychain.decide.waiverstore import WaiverRequest, create, revoke
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.models import utcnow
from supplychain.interface import ImageTarget, PolicyError
from supplychain.service import Service, build_service
from supplychain.signatures import (
    KeyFileSigner,
    attest_image,
    cosign,
    generate_key,
    public_pem,
    sign_image,
)
from supplychain.signatures.dsse import pae
from supplychain.signatures.statements import statement
from supplychain.signatures.storage import SignatureStore
from tests.conftest import make_settings, new_database
from tests.support import images
from tests.support.registry import Registry, free_port
from tests.support.service import Process, run_cli, service_env, wait_for
from tests.support.tokens import issue
from tests.test_ci_admission import _review
from tests.test_keyless import IDENTITY, ISSUER, PrivateSigstore, private_sigstore
from tests.test_policy_rules import ADVISORIES, PROVENANCE
from tests.test_vuln_scan import install_db

SLSA = "https://slsa.dev/provenance/v1"
SIGNED_HOURS_AGO = 3


@dataclass
class World:
    service: Service
    url: str
    host: str
    facts: ImageFacts
    tmp: Path
    signed_at: datetime


def _keyless_attestation(
    store: SignatureStore, target: ImageTarget, sigstore: PrivateSigstore, not_before: datetime
) -> datetime:
    """A cosign ``.att`` layer signed with a Fulcio certificate, with its Rekor bundle (SET) as
    cosign attaches it; returns the signing time the SET states."""
    claim = statement(target, SLSA, {"buildDefinition": {"buildType": "https://example.test"}})
    envelope_payload = pae("application/vnd.in-toto+json", claim)
    signed = sigstore.sign(envelope_payload, not_before=not_before)
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(claim).decode(),
        "signatures": [{"keyid": "", "sig": signed.signature_b64}],
    }
    assert signed.rekor_bundle is not None
    notes = {
        cosign.SIGNATURE_ANNOTATION: "",
        cosign.CERTIFICATE_ANNOTATION: signed.cert_pem.decode(),
        cosign.REKOR_BUNDLE_ANNOTATION: signed.rekor_bundle.decode(),
        cosign.PREDICATE_ANNOTATION: SLSA,
    }
    layer = json.dumps(envelope).encode()
    store.attach_to_tag(target, cosign.ATTESTATION_SUFFIX, layer, cosign.DSSE_TYPE, notes)
    integrated = json.loads(signed.rekor_bundle)["Payload"]["integratedTime"]
    return datetime.fromtimestamp(integrated, tz=UTC)


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "postgresql":
        with new_database() as url:
            yield url
    else:
        url = f"sqlite:///{tmp / 'policy.db'}"
        database = Database(url)
        database.upgrade()
        database.dispose()
        yield url


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"rego-{request.param}")
    sigstore = private_sigstore(tmp_path_factory)
    with _database(request.param, tmp) as url, Registry(tmp / "registry") as registry:
        app = images.push(images.app_layout(), "app", f"{registry.host}/team/app:app")
        key_a = generate_key()
        (tmp / "a.pub").write_bytes(public_pem(key_a.public_key()))
        install_db(tmp / "trivy", ADVISORIES, tmp)
        settings = make_settings(
            tmp,
            url,
            registries=registry.host,
            verify_keys=str(tmp / "a.pub"),
            certificate_identity=IDENTITY,
            certificate_oidc_issuer=ISSUER,
            trusted_root=str(sigstore.root),
        )
        service = build_service(settings)
        target = ImageTarget(registry.host, "team/app", app, "app")
        store = SignatureStore(service.client)
        sign_image(store, target, KeyFileSigner(key_a))
        claim = statement(target, PROVENANCE, {"builder": {"id": "https://ci.example.test"}})
        attest_image(store, target, KeyFileSigner(key_a), claim, PROVENANCE)
        start = utcnow() - timedelta(hours=SIGNED_HOURS_AGO, seconds=30)
        signed_at = _keyless_attestation(store, target, sigstore, start)
        with service.db.session() as session:
            service.queue.enqueue(session, "image", target)
        assert service.worker("test").run_once()
        with service.db.session() as session:
            row = session.scalars(select(models.Image)).one()
            facts = service.decider.load(session, row)
        assert isinstance(facts, ImageFacts)
        yield World(service, url, registry.host, facts, tmp, signed_at)
        service.db.dispose()


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def policy(world: World, rules: dict[str, object], name: str = "policy.yaml") -> Path:
    text = json.dumps({"apiVersion": "supplychain.dev/v1", "name": "t", "rules": rules})
    return write(world.tmp, name, text)


def verdict(world: World, rules: dict[str, object]) -> tuple[str, list[str], list[str]]:
    """(decision, rules that denied, reasons) of a policy with these default rules."""
    loaded = read_policy(policy(world, rules))
    answer = decide(world.facts, loaded, utcnow())
    assert answer.policy_digest == loaded.digest
    hit = answer.details.get("rules", [])
    assert isinstance(hit, list)
    return answer.decision, [str(r) for r in hit], list(answer.reasons)


# --- facts ---------------------------------------------------------------------------------------


def test_licences_config_and_signing_times_are_recorded(world: World) -> None:
    evidence = world.facts.evidence
    by_name = {c.name: c for c in evidence.components}
    assert by_name["requests"].licenses == ("Apache-2.0",)
    assert by_name["bash"].licenses and "GPL-3.0-or-later" in by_name["bash"].licenses[0]
    assert evidence.config is not None  # umoci's config: no User, so the image runs as root
    assert evidence.config.user == ""
    attested = {s.predicate_type: s for s in evidence.signatures if s.is_attestation}
    assert attested[SLSA].verified and attested[SLSA].signer == f"{IDENTITY} ({ISSUER})"
    assert attested[SLSA].signed_at == world.signed_at
    assert attested[PROVENANCE].verified and attested[PROVENANCE].signed_at is None


# --- licences ------------------------------------------------------------------------------------


def test_licence_rule_allows_and_denies(world: World) -> None:
    assert verdict(world, {"severities": [], "licenses": {"deny": ["AGPL-3.0-only"]}})[:2] == (
        "allow",
        [],
    )
    decision, hit, reasons = verdict(
        world, {"severities": [], "licenses": {"deny": ["GPL-3.0-or-later"]}}
    )
    assert (decision, hit) == ("deny", ["licenses"])
    assert any(r.startswith("forbidden licence GPL-3.0-or-later") and "pkg:deb/debian/bash@" in r
               for r in reasons)  # fmt: skip
    # Apache-2.0 is requests' only licence: an expression naming it forbids it
    decision, hit, reasons = verdict(
        world, {"severities": [], "licenses": {"deny": ["Apache-2.0 OR MPL-2.0"]}}
    )
    assert decision == "deny" and any("pkg:pypi/requests@2.19.0" in r for r in reasons)


def test_each_stated_licence_is_judged_on_its_own(world: World) -> None:
    """e2fsprogs states ``GPL-2.0-or-later WITH Texinfo-exception`` next to texts that are not
    SPDX (``GPL or MIT-US-export``): those do not hide it, and the bare licence matches it."""
    e2fsprogs = next(c for c in world.facts.evidence.components if c.name == "e2fsprogs")
    assert "GPL or MIT-US-export" in e2fsprogs.licenses
    reasons = verdict(world, {"severities": [], "licenses": {"deny": ["GPL-2.0-or-later"]}})[2]
    assert any(
        r.startswith("forbidden licence GPL-2.0-or-later (GPL-2.0-or-later WITH Texinfo-exception)")
        and "pkg:deb/debian/e2fsprogs@" in r
        for r in reasons
    ), reasons


def test_unknown_licences_deny_only_when_asked(world: World) -> None:
    """base-passwd states ``GPL-2.0-only`` and ``public-domain``, which is not an SPDX licence."""
    rules: dict[str, object] = {"severities": [], "licenses": {"deny": ["AGPL-3.0-only"]}}
    assert verdict(world, rules)[0] == "allow"
    rules = {"severities": [], "licenses": {"deny": ["AGPL-3.0-only"], "unknown": "deny"}}
    decision, hit, reasons = verdict(world, rules)
    assert (decision, hit) == ("deny", ["licenses"])
    assert any(
        r.startswith("licence not an SPDX expression: public-domain in pkg:deb/debian/base-passwd@")
        for r in reasons
    ), reasons


def test_a_licence_choice_without_the_forbidden_one_is_allowed(world: World) -> None:
    """libcap2 states ``BSD-3-Clause OR GPL-2.0-only`` and ``BSD-3-Clause OR GPL-2.0-or-later``:
    forbidding one side of each choice leaves the other; forbidding both sides denies."""
    libcap = next(c for c in world.facts.evidence.components if c.name == "libcap2")
    assert libcap.licenses == ("BSD-3-Clause OR GPL-2.0-only", "BSD-3-Clause OR GPL-2.0-or-later")

    def denied(*ids: str) -> bool:
        reasons = verdict(world, {"severities": [], "licenses": {"deny": list(ids)}})[2]
        return any("pkg:deb/debian/libcap2@" in r for r in reasons)

    assert not denied("BSD-3-Clause")
    assert not denied("GPL-2.0-only", "GPL-2.0-or-later")
    assert denied("BSD-3-Clause", "GPL-2.0-only")


def test_a_licence_that_is_not_spdx_is_a_policy_error(world: World) -> None:
    path = write(
        world.tmp,
        "bad-licence.yaml",
        "apiVersion: supplychain.dev/v1\nrules:\n  licenses:\n    deny:\n      - Not-A-Licence\n",
    )
    with pytest.raises(PolicyError, match=r"bad-licence\.yaml:5: rules\.licenses\.deny\[0\]"):
        read_policy(path)


# --- attestations' maximum age -------------------------------------------------------------------


def test_attestation_max_age_allows_and_denies(world: World) -> None:
    def att(hours: float, predicate: str = SLSA) -> dict[str, object]:
        return {"severities": [], "attestations": [{"predicate_type": predicate,
                                                    "max_age_hours": hours}]}  # fmt: skip

    assert verdict(world, att(SIGNED_HOURS_AGO + 1))[:2] == ("allow", [])
    decision, hit, reasons = verdict(world, att(SIGNED_HOURS_AGO - 1))
    assert (decision, hit) == ("deny", ["attestations"])
    assert reasons == [
        f"attestation of {SLSA} older than {SIGNED_HOURS_AGO - 1}h "
        f"(signed {world.signed_at.isoformat()})"
    ]


def test_attestation_without_a_verified_time_fails_a_max_age(world: World) -> None:
    """The key-signed cosign attestation has no Rekor entry or timestamp: its age is unknown."""
    rules = {"severities": [], "attestations": [{"predicate_type": PROVENANCE}]}
    assert verdict(world, rules)[:2] == ("allow", [])
    rules = {"severities": [], "attestations": [{"predicate_type": PROVENANCE,
                                                 "max_age_hours": 24 * 365}]}  # fmt: skip
    decision, hit, reasons = verdict(world, rules)
    assert (decision, hit) == ("deny", ["attestations"])
    assert "signing time unknown" in reasons[0]


# --- Rego ----------------------------------------------------------------------------------------

CRITICAL_REGO = """package supplychain.critical

import rego.v1

deny contains msg if {
  some f in input.findings
  f.severity == "CRITICAL"
  f.vex == null
  msg := sprintf("%s in %s %s", [f.id, f.package, f.installed])
}
"""
ROOT_REGO = """package supplychain.root

import rego.v1

warn contains "runs as root (no USER in the image config)" if input.config.user == ""
"""
ECHO_REGO = """package supplychain.echo

import rego.v1

warn contains sprintf("version=%s", [input.version])
warn contains sprintf("digest=%s", [input.image.digest])
warn contains sprintf("name=%s", [input.image.name])
warn contains sprintf("packages=%d", [input.sbom.components])
warn contains sprintf("requests=%s", [p.licenses[0]]) if {
  some p in input.sbom.packages
  p.name == "requests"
}
warn contains sprintf("slsa signed_at=%s", [a.signed_at]) if {
  some a in input.attestations
  a.predicate_type == "https://slsa.dev/provenance/v1"
}
warn contains sprintf("signers=%d", [count(input.signatures)])
warn contains sprintf("scanner=%s", [input.scan.scanner])
"""
ECHO_WAIVERS_REGO = """package supplychain.waivers

import rego.v1

warn contains sprintf("waivers=%s,%s", [r, p]) if {
  some a in input.waivers
  a.rule != null
  r := a.rule
  some b in input.waivers
  b.package != null
  p := b.package
}
"""
BROKEN_REGO = """package supplychain.broken

import rego.v1

deny contains msg if {
  n := 1 / count(input.waivers)  # no waiver is in force: division by zero
  msg := sprintf("%v", [n])
}
"""


def test_rego_deny_becomes_reasons_and_names_the_rule(world: World) -> None:
    write(world.tmp, "critical.rego", CRITICAL_REGO)
    decision, hit, reasons = verdict(world, {"severities": [], "rego": ["critical.rego"]})
    assert (decision, hit) == ("deny", ["rego"])
    assert "rego critical.rego: CVE-2018-18074 in requests 2.19.0" in reasons


def test_rego_warn_is_shown_and_does_not_deny(world: World) -> None:
    write(world.tmp, "root.rego", ROOT_REGO)
    decision, hit, reasons = verdict(world, {"severities": [], "rego": ["root.rego"]})
    assert (decision, hit) == ("allow", [])
    assert "warning: rego root.rego: runs as root (no USER in the image config)" in reasons


def test_rego_reads_the_versioned_input_built_from_the_facts(world: World) -> None:
    echo = ECHO_REGO
    write(world.tmp, "echo.rego", echo)
    loaded = read_policy(policy(world, {"severities": [], "rego": ["echo.rego"]}))
    answer = decide(world.facts, loaded, utcnow())
    warnings = answer.details["warnings"]
    assert isinstance(warnings, list)
    said = {str(w).removeprefix("rego echo.rego: ") for w in warnings}
    assert {
        f"version={INPUT_VERSION}",
        f"digest={world.facts.digest}",
        f"name={world.host}/team/app",
        f"packages={len(world.facts.evidence.components)}",
        "requests=Apache-2.0",
        f"slsa signed_at={world.signed_at.isoformat()}",
        "signers=1",
        "scanner=trivy",
    } <= said, said


def test_rego_decides_alike_from_many_threads(world: World) -> None:
    """The gate decides on many threads at once; each compiles its own copy of a module."""
    write(world.tmp, "critical.rego", CRITICAL_REGO)
    write(world.tmp, "root.rego", ROOT_REGO)
    loaded = read_policy(policy(world, {"severities": [], "rego": ["critical.rego", "root.rego"]}))
    now = utcnow()
    expected = decide(world.facts, loaded, now)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: decide(world.facts, loaded, now), range(16)))
    assert {(a.decision, a.reasons) for a in answers} == {(expected.decision, expected.reasons)}
    assert expected.decision == "deny" and len(expected.reasons) == 2


def test_waivers_lift_rego_and_licence_denies_and_rego_sees_them(world: World) -> None:
    write(world.tmp, "critical.rego", CRITICAL_REGO)
    write(world.tmp, "echo.rego", ECHO_WAIVERS_REGO)
    rules = {
        "severities": [],
        "rego": ["critical.rego", "echo.rego"],
        "licenses": {"deny": ["MPL-2.0"]},  # certifi's licence, no other package's
    }
    loaded = read_policy(policy(world, rules, "waived.yaml"))
    now = utcnow()
    expires = now + timedelta(hours=1)
    with world.service.db.session(write=True) as session:
        made = [
            create(
                session,
                WaiverRequest("carol", "accepted", "SEC-9", expires, world.facts.digest, **what),
                "carol",
                now,
            )
            for what in ({"rule": "rego"}, {"package": "certifi"})
        ]
    try:
        with world.service.db.session() as session:
            row = session.scalars(
                select(models.Image).where(models.Image.digest == world.facts.digest)
            ).one()
            facts = world.service.decider.load(session, row)
        assert isinstance(facts, ImageFacts)
        before = decide(world.facts, loaded, now)  # the facts loaded before the waivers
        assert before.decision == "deny" and before.details["rules"] == ["licenses", "rego"]
        waived = decide(facts, loaded, now)
        assert waived.decision == "allow", waived.reasons
        assert sum(r.startswith("waived by waiver") for r in waived.reasons) == 2
        assert "warning: rego echo.rego: waivers=rego,certifi" in waived.reasons
        assert decide(facts, loaded, expires).decision == "deny"  # expired: in force no more
    finally:
        with world.service.db.session(write=True) as session:
            for waiver in made:
                revoke(session, int(waiver["id"]), "carol", utcnow())


def test_an_index_gathers_its_platforms_warnings(world: World) -> None:
    layout = images.index_layout(world.tmp / "multi", {"linux/amd64": "app", "linux/arm64": "base"})
    images.push(layout, "multi", f"{world.host}/team/multi:multi")
    world.service.gate.decide(f"{world.host}/team/multi:multi")  # queues the index and images
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
    write(world.tmp, "root.rego", ROOT_REGO)
    loaded = read_policy(policy(world, {"severities": [], "rego": ["root.rego"]}, "index.yaml"))
    verdict = Decider(loaded).decide(facts, now=utcnow())
    warning = "rego root.rego: runs as root (no USER in the image config)"
    assert verdict.decision == "allow"
    assert verdict.details["warnings"] == [f"linux/amd64: {warning}", f"linux/arm64: {warning}"]
    assert f"linux/arm64: warning: {warning}" in verdict.reasons


def test_rego_evaluation_error_fails_closed(world: World) -> None:
    write(world.tmp, "broken.rego", BROKEN_REGO)
    decision, hit, reasons = verdict(world, {"severities": [], "rego": ["broken.rego"]})
    assert (decision, hit) == ("deny", ["rego"])
    assert reasons[0].startswith("rego broken.rego: not evaluated:"), reasons


def test_rego_deny_that_is_not_a_set_fails_closed(world: World) -> None:
    write(world.tmp, "bool.rego", "package supplychain.flag\n\ndeny := false\n")
    decision, _, reasons = verdict(world, {"severities": [], "rego": ["bool.rego"]})
    assert decision == "deny" and "deny must be a set of messages" in reasons[0]


def test_rego_syntax_error_names_file_and_line(world: World) -> None:
    rego = write(
        world.tmp,
        "syntax.rego",
        "package supplychain.syntax\n\nimport rego.v1\n\ndeny contains msg if {\n"
        "  input.image.name ==\n}\n",
    )
    path = policy(world, {"rego": ["syntax.rego"]}, "syntax.yaml")
    with pytest.raises(PolicyError) as caught:
        read_policy(path)
    assert str(caught.value).startswith(f"{rego}:6: ")
    assert main(["policy", "test", str(path)]) == 2
    missing = policy(world, {"rego": ["nowhere.rego"]}, "missing.yaml")
    with pytest.raises(PolicyError, match=r"missing\.yaml:1: rules\.rego\[0\]: no Rego file"):
        read_policy(missing)


def test_the_policy_digest_covers_the_rego_source(world: World) -> None:
    write(world.tmp, "root.rego", ROOT_REGO)
    path = policy(world, {"rego": ["root.rego"]}, "digest.yaml")
    before = read_policy(path).digest
    write(world.tmp, "root.rego", ROOT_REGO.replace("runs as root", "root user"))
    after = read_policy(path).digest
    assert before != after
    assert decide(world.facts, read_policy(path), utcnow()).policy_digest == after


def test_policy_test_shows_which_rule_decided(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUPPLYCHAIN_DATABASE_URL", world.url)
    monkeypatch.setenv("SUPPLYCHAIN_DATA_DIR", str(world.tmp / "data"))
    ref = f"{world.host}/team/app@{world.facts.digest}"
    write(world.tmp, "critical.rego", CRITICAL_REGO)
    write(world.tmp, "root.rego", ROOT_REGO)
    with world.service.db.session() as session:
        before = session.scalar(select(func.count()).select_from(models.Verdict))
    denying = policy(world, {"severities": [], "rego": ["critical.rego"]}, "deny.yaml")
    capsys.readouterr()
    assert main(["policy", "test", str(denying), "--image", ref]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["decision"] == "deny" and shown["rules"] == ["rego"]
    assert shown["policy"]["digest"] == read_policy(denying).digest
    licences = policy(
        world, {"severities": [], "licenses": {"deny": ["GPL-3.0-or-later"]}}, "l.yaml"
    )
    assert main(["policy", "test", str(licences), "--image", ref]) == 1
    assert json.loads(capsys.readouterr().out)["rules"] == ["licenses"]
    warning = policy(world, {"severities": [], "rego": ["root.rego"]}, "warn.yaml")
    assert main(["policy", "test", str(warning), "--image", ref]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["decision"] == "allow" and shown["rules"] == []
    assert "warning: rego root.rego: runs as root (no USER in the image config)" in shown["reasons"]
    assert shown["warnings"] == ["rego root.rego: runs as root (no USER in the image config)"]
    with world.service.db.session() as session:  # policy test records nothing
        assert session.scalar(select(func.count()).select_from(models.Verdict)) == before


def test_a_rego_warning_prints_but_does_not_fail_the_gate(world: World) -> None:
    """``supplychain serve --policy`` with a warn-only Rego rule: ``supplychain gate`` prints the
    warning and exits 0; with the deny rule too, it exits 1."""
    write(world.tmp, "root.rego", ROOT_REGO)
    write(world.tmp, "critical.rego", CRITICAL_REGO)
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(world.tmp / "serve-data"),
            "SUPPLYCHAIN_DATABASE_URL": world.url,
            "SUPPLYCHAIN_REGISTRIES": world.host,
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(world.tmp / "trivy"),
            "SUPPLYCHAIN_WORKERS": "0",
        }
    )
    tokens = issue(env)
    ref = f"{world.host}/team/app:app"
    for name, rules, code in (
        ("gate-warn.yaml", {"severities": [], "rego": ["root.rego"]}, 0),
        ("gate-deny.yaml", {"severities": [], "rego": ["critical.rego", "root.rego"]}, 1),
    ):
        path = policy(world, rules, name)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = ["serve", "--listen", f"127.0.0.1:{port}", "--policy", str(path)]
        process = Process(serve, env, world.tmp / f"{name}.log")
        try:
            log = process.log
            wait_for(lambda u=url: _healthy(u), 60, lambda f=log: f()[-3000:])
            cli_env = tokens.env({**env, "SUPPLYCHAIN_SERVER": url})
            table = run_cli(["gate", ref], cli_env)
            assert table.returncode == code, table.stdout + table.stderr
            assert "runs as root (no USER in the image config)" in table.stdout
            answer = json.loads(run_cli(["gate", ref, "--output", "json"], cli_env).stdout)
            assert answer["decision"] == ("allow" if code == 0 else "deny")
            assert answer["policy"]["digest"] == read_policy(path).digest
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": "team"},
                "spec": {"containers": [{"name": "app", "image": ref}]},
            }
            review = requests.post(
                f"{url}/v1/admission/validate",
                data=_review(pod),
                headers={"Content-Type": "application/json", **tokens.headers("ci")},
                timeout=60,
            ).json()["response"]
            assert review["allowed"] is (code == 0), review
            if code == 0:  # the warn rule reaches whoever creates the pod, which is admitted
                warning = "rego root.rego: runs as root (no USER in the image config)"
                assert review["warnings"] == [f"supplychain: {ref}: {warning}"]
        finally:
            process.stop()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
