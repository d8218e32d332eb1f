"""deploy/: the kustomize manifests validate for a current Kubernetes, and the Containerfile
builds (buildah, base image built here with debootstrap, wheels built on the host) into an image
that runs as non-root."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from supplychain import __version__
from tests.support import images

ROOT = Path(__file__).parent.parent
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.37.0"


def _documents() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl:  # rendered as kustomize renders it
        out = subprocess.run(
            [kubectl, "kustomize", str(KUSTOMIZE)],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        return [d for d in yaml.safe_load_all(out) if d]
    listed = yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())["resources"]
    return [d for name in listed for d in yaml.safe_load_all((KUSTOMIZE / name).read_text()) if d]


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return _documents()


def test_manifests_validate_strictly_for_a_current_kubernetes(
    documents: list[dict[str, Any]],
) -> None:
    for doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = sorted(d["kind"] for d in documents)
    assert kinds.count("Deployment") == 2 and "Job" in kinds and "NetworkPolicy" in kinds
    assert {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} <= set(kinds)


def test_pods_are_restricted(documents: list[dict[str, Any]]) -> None:
    pods = [d["spec"]["template"]["spec"] for d in documents if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == 3
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sec = container["securityContext"]
            assert sec["readOnlyRootFilesystem"] is True
            assert sec["allowPrivilegeEscalation"] is False
            assert sec["capabilities"]["drop"] == ["ALL"]
            assert container["image"].endswith(":0.1.0")  # kustomize's images: applied
    roles = [d for d in documents if d["kind"] in ("Role", "ClusterRole", "RoleBinding")]
    assert roles == []  # the service needs no Kubernetes API access


def test_webhooks_fail_closed_with_opt_in_and_skip_own_namespace(
    documents: list[dict[str, Any]],
) -> None:
    hooks = [
        (d["kind"], hook)
        for d in documents
        if d["kind"].endswith("WebhookConfiguration")
        for hook in d["webhooks"]
    ]
    paths = {kind: hook["clientConfig"]["service"]["path"] for kind, hook in hooks}
    assert paths == {
        "MutatingWebhookConfiguration": "/v1/admission/mutate",
        "ValidatingWebhookConfiguration": "/v1/admission/validate",
    }
    for _, hook in hooks:
        assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] <= 30
        selector = hook["namespaceSelector"]
        assert selector["matchLabels"] == {"supplychain.io/gate": "enabled"}
        own = ["supplychain", "kube-system"]
        assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": own} in (
            selector["matchExpressions"]
        )
        resources = {r for rule in hook["rules"] for r in rule["resources"]}
        assert {"pods", "pods/ephemeralcontainers", "deployments", "replicasets", "statefulsets",
                "daemonsets", "jobs", "cronjobs"} <= resources  # fmt: skip


def _buildah() -> str:
    """buildah, which scripts/install-deps.sh installs: missing or broken is a failure."""
    buildah = shutil.which("buildah")
    if buildah is None:
        pytest.fail("buildah is not installed: run scripts/install-deps.sh (apt: buildah)")
    probe = subprocess.run(
        [buildah, "--storage-driver", "vfs", "info"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(f"buildah cannot run here: {probe.stderr.strip()[:300]}")
    return buildah


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[list[str]]:
    binary = _buildah()
    root = tmp_path / "storage"
    words = [
        binary,
        "--storage-driver",
        "vfs",
        "--root",
        str(root),
        "--runroot",
        str(tmp_path / "run"),
    ]
    yield words
    subprocess.run([*words, "rm", "--all"], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _run(words: list[str], timeout: float = 1800) -> str:
    result = subprocess.run(words, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{words[:6]}…\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


SOURCES = ("pyproject.toml", "setup.py", "README.md", "alembic.ini", "alembic", "supplychain",
           "registry_hooks", "sbom")  # fmt: skip
"""What the Containerfile's ``build`` stage copies: the package's source."""


def _wheelhouse(tmp_path: Path) -> Path:
    """``pip wheel . -w wheelhouse`` with this Python's pip (which trusts the host's CAs), from
    a copy of the sources so that the build leaves nothing in the work tree. The dependencies'
    wheels are built once per pyproject.toml, setup.py and Python (cached); the package's own
    wheel every time."""
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]

    def dependencies(directory: Path) -> None:
        _run([*pip, str(source), "-w", str(directory)])
        for own in directory.glob("supplychain-*.whl"):
            own.unlink()

    key = hashlib.sha256(f"{sys.version_info[:2]} {platform.machine()}".encode())
    for name in ("pyproject.toml", "setup.py"):
        key.update((ROOT / name).read_bytes())
    cached = images.cached_directory(f"wheelhouse-{key.hexdigest()[:16]}", dependencies)
    wheels = tmp_path / "wheelhouse"
    shutil.copytree(cached, wheels, ignore=shutil.ignore_patterns(".complete"))
    _run([*pip, "--no-deps", str(source), "-w", str(wheels)])
    return wheels


@pytest.mark.e2e
def test_containerfile_builds_and_runs_as_non_root(buildah: list[str], tmp_path: Path) -> None:
    """The Containerfile builds from a locally built Debian base, with the wheels built on the
    host as its ``wheels`` build context (pip inside the build never reaches an index), and the
    image runs ``supplychain --version`` as the user it declares, not root."""
    started = time.monotonic()
    wheels = _wheelhouse(tmp_path)
    phases = {"wheelhouse": time.monotonic() - started}
    layout = tmp_path / "layout"  # buildah names the image after the path: no ".cache" in it
    layout.symlink_to(images.debian_python_layout())
    base = f"oci:{layout}:base"  # FROM reads the layout: no container, no commit of the base
    tag = f"localhost/supplychain-test-{uuid.uuid4().hex[:8]}"
    build = _run([
        *buildah, "build", "--isolation", "chroot", "--pull-never", "--build-arg", f"BASE={base}",
        "--build-context", f"wheels={wheels}", "-f", str(ROOT / "deploy" / "Containerfile"),
        "-t", tag, str(ROOT),
    ])  # fmt: skip
    phases["build"] = time.monotonic() - started - sum(phases.values())
    assert "Reading package lists" not in build  # the base has python3: no apt-get, no network
    assert "Looking in links: /wheels" in build and "Successfully installed" in build
    config = _run(
        [*buildah, "inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}", tag]
    )
    assert config.strip() == "10001:10001"
    running = _run([*buildah, "from", tag]).strip()
    run = [*buildah, "run", "--isolation", "chroot", running, "--"]
    assert _run([*run, "supplychain", "--version"]) == f"supplychain {__version__}\n"
    assert _run([*run, "id", "-u"]).strip() == "10001"
    phases["run"] = time.monotonic() - started - sum(phases.values())
    print("containerfile:", ", ".join(f"{name} {seconds:.0f}s" for name, seconds in phases.items()))
