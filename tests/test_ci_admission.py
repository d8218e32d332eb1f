"""The gate's CI outputs and Kubernetes admission, end to end on the real parts.

One stack for the module: PostgreSQL, the Debian registry, Trivy with a test-built DB, and
``supplychain serve`` over HTTPS (a self-signed certificate made here); the gate queues the scans.
The app image has a CRITICAL finding (denied), the base image none (allowed).
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from junitparser import Error, Failure, JUnitXml
from sqlalchemy import select

from supplychain.api.app import create_app
from supplychain.evidence.database import Database
from supplychain.evidence.models import Job
from supplychain.service import build_service
from tests.conftest import TOKEN, make_settings, new_database
from tests.support import images
from tests.support.registry import Registry, free_port
from tests.support.service import Process, run_cli, service_env, wait_for
from tests.support.tokens import bearer, issue
from tests.support.trivydb import Advisory, build_trivy_db

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data"
ADVISORIES = (
    Advisory(
        "CVE-2018-18074",
        "pip::GitHub Security Advisory pip",
        "requests",
        "CRITICAL",
        vulnerable_versions=("<2.20.0",),
        patched_versions=("2.20.0",),
        title="requests sends Authorization headers on redirect",
    ),
    Advisory(
        "CVE-2020-8203",
        "npm::GitHub Security Advisory npm",
        "lodash",
        "MEDIUM",
        vulnerable_versions=("<4.17.19",),
        patched_versions=("4.17.19",),
    ),
)
KINDS: dict[str, tuple[str, str, str]] = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}


@dataclass
class Stack:
    root: Path
    registry: Registry
    quiet: Registry
    doomed: Registry
    url: str
    db: Database
    server: str
    cert: Path
    env: dict[str, str]
    app: str
    base: str


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the webhook's caBundle would hold it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "supplychain.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _ready(process: Process, url: str, cert: Path) -> bool:
    if process.proc.poll() is not None:
        raise RuntimeError(f"server exited:\n{process.log()[-3000:]}")
    try:
        return requests.get(f"{url}/healthz", timeout=2, verify=str(cert)).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cidoor")
    layout = images.app_layout()
    build_trivy_db(root / "trivy", ADVISORIES)
    cert, key = _certificate(root)
    port = free_port()
    with (
        new_database() as url,
        Registry(root / "registry") as registry,
        Registry(root / "quiet") as quiet,
        Registry(root / "doomed") as doomed,
    ):
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(root / "data"),
                "SUPPLYCHAIN_DATABASE_URL": url,
                "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
                "SUPPLYCHAIN_REGISTRIES": f"{registry.host},{quiet.host},{doomed.host}",
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(root / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_WORKERS": "2",
                "SUPPLYCHAIN_ADMISSION_WAIT_SECONDS": "1",
            }
        )
        server = f"https://127.0.0.1:{port}"
        tokens = issue(env)
        ci = tokens.headers("ci")
        process = Process(
            [
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
            ],
            env,
            root / "server.log",
        )
        db = Database(url)
        try:
            wait_for(lambda: _ready(process, server, cert), 60, lambda: process.log()[-3000:])
            app = images.push(layout, "app", f"{registry.host}/team/app:v1")
            base = images.push(layout, "base", f"{registry.host}/team/base:v1")
            stack = Stack(
                root,
                registry,
                quiet,
                doomed,
                url,
                db,
                server,
                cert,
                tokens.env({**env, "SUPPLYCHAIN_SERVER": server, "SSL_CERT_FILE": str(cert)}),
                app,
                base,
            )
            for image in ("app", "base"):  # the gate queues what is not scanned yet
                requests.post(
                    f"{server}/v1/gate",
                    json={"image": f"{registry.host}/team/{image}:v1"},
                    headers=ci,
                    timeout=30,
                    verify=str(cert),
                ).raise_for_status()
            wait_for(
                lambda: _scanned(stack),
                300,
                lambda: f"jobs did not finish; server log:\n{process.log()[-4000:]}",
            )
            yield stack
        finally:
            process.stop()
            db.dispose()


def _scanned(stack: Stack) -> bool:
    with stack.db.session() as session:
        states = session.scalars(
            select(Job.state).where(Job.digest.in_({stack.app, stack.base}))
        ).all()
    return len(states) == 2 and all(s == "done" for s in states)


# --- gate outputs -------------------------------------------------------------------------------


def test_gate_sarif_validates_against_the_sarif_2_1_0_schema(stack: Stack) -> None:
    host = stack.registry.host
    result = run_cli(["gate", f"{host}/team/app:v1", "--output", "sarif"], stack.env)
    assert result.returncode == 1, result.stdout + result.stderr
    log = json.loads(result.stdout)
    schema = json.loads((DATA / "schemas" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(log)
    run = log["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    rule = rules["CVE-2018-18074"]
    assert rule["helpUri"] == "https://nvd.nist.gov/vuln/detail/CVE-2018-18074"
    assert rule["properties"]["security-severity"] == "9.5"
    assert rule["defaultConfiguration"]["level"] == "error"
    assert rules["CVE-2020-8203"]["defaultConfiguration"]["level"] == "warning"
    gate = next(r for r in run["results"] if r["ruleId"] == "supplychain/gate")
    assert gate["level"] == "error" and "CVE-2018-18074" in gate["message"]["text"]
    found = next(r for r in run["results"] if r["ruleId"] == "CVE-2018-18074")
    assert found["properties"]["fixed"] == "2.20.0"
    assert found["properties"]["digest"] == stack.app
    assert run["properties"]["pinned"] == f"{host}/team/app@{stack.app}"
    for result_ in run["results"]:  # GitHub code scanning refuses results without a location
        assert result_["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "team/app"
        assert run["tool"]["driver"]["rules"][result_["ruleIndex"]]["id"] == result_["ruleId"]


def test_gate_junit_is_read_by_a_junit_consumer(stack: Stack, tmp_path: Path) -> None:
    host = stack.registry.host
    denied = run_cli(["gate", f"{host}/team/app:v1", "--output", "junit"], stack.env)
    assert denied.returncode == 1, denied.stderr
    report = tmp_path / "denied.xml"
    report.write_text(denied.stdout)
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(report))}
    gate = suites[f"gate {host}/team/app:v1"]
    assert gate.failures >= 1
    failed = [c for c in gate if any(isinstance(r, Failure) for r in c.result)]
    assert any("CVE-2018-18074" in case.name for case in failed)
    vulns = suites[f"vulnerabilities {host}/team/app:v1"]
    names = [case.name for case in vulns]
    assert "[CRITICAL] CVE-2018-18074 requests 2.19.0" in names
    allowed = run_cli(["gate", f"{host}/team/base:v1", "--output", "junit"], stack.env)
    assert allowed.returncode == 0, allowed.stderr
    report.write_text(allowed.stdout)
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(report))}
    gate = suites[f"gate {host}/team/base:v1"]
    assert gate.tests == 1 and gate.failures == 0 and gate.errors == 0
    missing = run_cli(["gate", f"{host}/team/app:nope", "--output", "junit"], stack.env)
    assert missing.returncode == 2
    report.write_text(missing.stdout)
    cases = [case for suite in JUnitXml.fromfile(str(report)) for case in suite]
    assert any(isinstance(r, Error) for case in cases for r in case.result)


def test_gate_table_markdown_and_json_name_package_cve_and_fix(stack: Stack) -> None:
    host = stack.registry.host
    table = run_cli(["gate", f"{host}/team/app:v1"], stack.env)
    assert table.returncode == 1
    assert f"pinned:   {host}/team/app@{stack.app}" in table.stdout
    line = next(x for x in table.stdout.splitlines() if x.startswith("CRITICAL "))
    assert line.split() == ["CRITICAL", "CVE-2018-18074", "requests", "2.19.0", "2.20.0"]
    markdown = run_cli(["gate", f"{host}/team/app:v1", "--output", "markdown"], stack.env)
    assert markdown.returncode == 1
    assert markdown.stdout.startswith("### supplychain gate: ❌ denied")
    assert f"`{host}/team/app@{stack.app}`" in markdown.stdout
    assert (
        "| CRITICAL | [CVE-2018-18074](https://nvd.nist.gov/vuln/detail/CVE-2018-18074) "
        "| requests | 2.19.0 | 2.20.0 |" in markdown.stdout
    )
    answer = json.loads(
        run_cli(["gate", f"{host}/team/app:v1", "--output", "json"], stack.env).stdout
    )
    finding = next(f for f in answer["findings"] if f["id"] == "CVE-2018-18074")
    assert finding == {
        "id": "CVE-2018-18074",
        "package": "requests",
        "installed": "2.19.0",
        "fixed": "2.20.0",
        "severity": "CRITICAL",
        "digest": stack.app,
        "platform": None,
        "purl": "pkg:pypi/requests@2.19.0",
        "title": "requests sends Authorization headers on redirect",
    }
    assert answer["findings"][0]["severity"] == "CRITICAL"  # most severe first


# --- admission ----------------------------------------------------------------------------------


def _workload(kind: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    group, version, _ = KINDS[kind]
    meta = {"name": f"demo-{kind.lower()}", "namespace": "team"}
    api_version = f"{group}/{version}" if group else version
    if kind == "Pod":
        return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": pod_spec}
    template = {"metadata": {"labels": {"app": "demo"}}, "spec": pod_spec}
    if kind == "CronJob":
        spec: dict[str, Any] = {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": template}},
        }
    elif kind == "Job":
        spec = {"template": template}
    else:
        spec = {"selector": {"matchLabels": {"app": "demo"}}, "template": template}
        if kind == "StatefulSet":
            spec["serviceName"] = "demo"
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}


def _review(obj: dict[str, Any], uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> bytes:
    """The documented AdmissionReview request, for ``obj``, as the API server sends it."""
    review = json.loads((DATA / "admission" / "pod-create.json").read_text())
    group, version, resource = KINDS[obj["kind"]]
    request = review["request"]
    gvk = {"group": group, "version": version, "kind": obj["kind"]}
    gvr = {"group": group, "version": version, "resource": resource}
    request.update(
        uid=uid,
        kind=gvk,
        requestKind=gvk,
        resource=gvr,
        requestResource=gvr,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"]["namespace"],
        object=obj,
    )
    return json.dumps(review).encode()


def _ci(stack: Stack) -> dict[str, str]:
    """The ``Authorization`` header the API server sends (its admission kubeconfig's token)."""
    return {"Authorization": f"Bearer {stack.env['SUPPLYCHAIN_TOKEN']}"}


def _post(stack: Stack, path: str, body: bytes) -> dict[str, Any]:
    response = requests.post(
        f"{stack.server}{path}",
        data=body,
        headers={"Content-Type": "application/json", **_ci(stack)},
        timeout=60,
        verify=str(stack.cert),
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    return answer["response"]


def _images(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        found = [obj["image"]] if isinstance(obj.get("image"), str) else []
        return found + [i for v in obj.values() for i in _images(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in _images(v)]
    return []


@pytest.mark.parametrize("kind", list(KINDS))
def test_admission_denies_and_pins_every_workload_kind(stack: Stack, kind: str) -> None:
    host = stack.registry.host
    app, base = f"{host}/team/app:v1", f"{host}/team/base:v1"
    pod_spec: dict[str, Any] = {
        "initContainers": [{"name": "init", "image": base}],
        "containers": [{"name": "main", "image": base}, {"name": "side", "image": base}],
    }
    if kind == "Pod":
        pod_spec["ephemeralContainers"] = [{"name": "debug", "image": base}]
    clean = _workload(kind, pod_spec)
    allowed = _post(stack, "/v1/admission/validate", _review(clean, uid=f"uid-{kind}"))
    assert allowed["uid"] == f"uid-{kind}" and allowed["allowed"] is True
    assert "patch" not in allowed
    mutated = _post(stack, "/v1/admission/mutate", _review(clean))
    assert mutated["allowed"] is True and mutated["patchType"] == "JSONPatch"
    patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(mutated["patch"])))
    pinned = patch.apply(copy.deepcopy(clean))
    expected = len(_images(clean))
    assert _images(pinned) == [f"{host}/team/base@{stack.base}"] * expected
    for where in ("initContainers", "containers", "ephemeralContainers"):
        spec = pod_spec.get(where)
        if spec:  # each container list rewritten, nothing else changed
            assert len(spec) == len([c for c in spec if c["image"] == base])
    # one container of any list running the denied image refuses the whole object
    for where in (
        "initContainers",
        "containers",
        *(("ephemeralContainers",) if kind == "Pod" else ()),
    ):
        bad = copy.deepcopy(pod_spec)
        bad[where][-1]["image"] = app
        for path in ("/v1/admission/validate", "/v1/admission/mutate"):
            denied = _post(stack, path, _review(_workload(kind, bad)))
            assert denied["allowed"] is False and denied["status"]["code"] == 403
            assert app in denied["status"]["message"]
            assert "CVE-2018-18074" in denied["status"]["message"]
            assert "patch" not in denied


def test_admission_allows_deletes_and_refuses_malformed_reviews(stack: Stack) -> None:
    review = json.loads(_review(_workload("Pod", {"containers": [{"name": "x", "image": "y"}]})))
    review["request"].update(operation="DELETE", object=None)
    gone = _post(stack, "/v1/admission/validate", json.dumps(review).encode())
    assert gone["allowed"] is True
    for body in (
        b"not json",
        b"[]",
        json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(),
        _review(_workload("Pod", {"containers": [{"name": "x"}]})),
        _review(_workload("Pod", {"containers": "nginx"})),
    ):
        response = requests.post(
            f"{stack.server}/v1/admission/validate",
            data=body,
            headers=_ci(stack),
            timeout=30,
            verify=str(stack.cert),
        )
        assert response.status_code == 400, response.text  # failurePolicy: Fail refuses it
    review = json.loads(_review(_workload("Pod", {"containers": []})))
    review["request"]["kind"]["kind"] = "Widget"
    odd = _post(stack, "/v1/admission/validate", json.dumps(review).encode())
    assert odd["allowed"] is False and "Widget" in odd["status"]["message"]


def test_admission_never_allows_unscanned_or_unresolvable_images(
    stack: Stack, tmp_path: Path
) -> None:
    # An image never seen (its own layer), from a registry that sends no webhook: the gate
    # queues its scan. The registry then withholds the layer (its bytes deleted from storage),
    # so the scan cannot finish during the admission's wait however fast the scanner is (the
    # app image, seen from the other registry, was scanned from cache within the second).
    layout = images.files_layout(
        tmp_path / "late", "v1", [{"etc/late-marker": uuid.uuid4().hex.encode()}]
    )
    late = f"{stack.quiet.host}/team/late:v1"
    images.push(layout, "v1", late)
    for layer in images.manifest(layout, "v1")["layers"]:
        stack.quiet.blob_data(layer["digest"]).unlink()
    pending = _post(
        stack,
        "/v1/admission/validate",
        _review(_workload("Pod", {"containers": [{"name": "a", "image": late}]})),
    )
    assert pending["allowed"] is False and "pending" in pending["status"]["message"], pending
    gone = f"{stack.doomed.host}/team/base:v1"
    images.push(images.app_layout(), "base", gone)
    stack.doomed.stop()  # the registry is down: the tag cannot be resolved
    for path in ("/v1/admission/validate", "/v1/admission/mutate"):
        answer = _post(
            stack,
            path,
            _review(_workload("Deployment", {"containers": [{"name": "a", "image": gone}]})),
        )
        assert answer["allowed"] is False and "could not resolve" in answer["status"]["message"]
    cli = run_cli(["gate", gone, "--output", "sarif"], stack.env)
    assert cli.returncode == 2
    assert json.loads(cli.stdout)["runs"][0]["results"][0]["level"] == "warning"


def test_audit_mode_admits_with_warnings_but_not_when_the_gate_is_down(
    stack: Stack, tmp_path: Path
) -> None:
    host = stack.registry.host
    settings = make_settings(
        tmp_path,
        stack.url,
        registries=host,
        admission_mode="audit",
        trivy_cache_dir=str(stack.root / "trivy"),
    )
    app = f"{host}/team/app:v1"
    body = _review(_workload("Job", {"containers": [{"name": "a", "image": app}]}))
    ci = bearer(stack.db, "ci", f"ci-audit-{uuid.uuid4().hex[:6]}")
    with TestClient(create_app(build_service(settings)), headers=ci) as client:
        answer = client.post("/v1/admission/mutate", content=body).json()["response"]
    assert answer["allowed"] is True
    assert any("CVE-2018-18074" in w and "(audit)" in w for w in answer["warnings"])
    pinned = jsonpatch.JsonPatch(json.loads(base64.b64decode(answer["patch"])))
    obj = pinned.apply(json.loads(body)["request"]["object"])
    assert _images(obj) == [f"{host}/team/app@{stack.app}"]
    # The database unreachable: no allow, in audit mode either; the gate answers no decision,
    # and the token cannot be checked: 503 (failurePolicy: Fail refuses the object).
    down = make_settings(
        tmp_path,
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        registries=host,
        admission_mode="audit",
    )
    base = f"{host}/team/base:v1"
    client = TestClient(create_app(build_service(down)), raise_server_exceptions=False, headers=ci)
    with client:
        for path in ("/v1/admission/validate", "/v1/admission/mutate"):
            body = _review(_workload("Pod", {"containers": [{"name": "a", "image": base}]}))
            refused = client.post(path, content=body)
            assert refused.status_code == 503 and "database unavailable" in refused.json()["error"]
            assert "allowed" not in refused.text
        gate = client.post("/v1/gate", json={"image": base})
        assert gate.status_code >= 500
        assert "allow" not in gate.text


def test_junit_of_hostile_strings_still_parses(tmp_path: Path) -> None:
    from supplychain.report import render

    answer = {
        "decision": "deny",
        "image": "r/x:1\x00\x1b]8;;",
        "reasons": ["bad \x07 reason </failure>"],
        "findings": [{"id": "X\x01<", "package": "p&", "severity": "LOW"}],
    }
    report = tmp_path / "hostile.xml"
    report.write_text(render(answer, "junit"))
    xml = JUnitXml.fromfile(str(report))
    assert xml.failures == 2
