"""``supplychain keys generate / sign / attest / verify`` against the real local registry."""

from __future__ import annotations

import argparse
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from supplychain.cli.signing import add_parser
from tests.support.images import push, tiny_layout
from tests.support.registry import Registry

PASSWORD = "correct horse battery staple"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="supplychain")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SUPPLYCHAIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SUPPLYCHAIN_CONFIG", raising=False)
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    registry = Registry(tmp_path / "registry").start()
    try:
        push(tiny_layout(), "tiny", f"{registry.host}/team/cli:v1")
        yield f"{registry.host}/team/cli:v1"
    finally:
        registry.stop()


def test_generate_sign_attest_verify(
    image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = str(tmp_path / "release")
    monkeypatch.delenv("SUPPLYCHAIN_KEY_PASSWORD", raising=False)
    assert run("keys", "generate", "--output-prefix", prefix) == 2
    assert "SUPPLYCHAIN_KEY_PASSWORD" in capsys.readouterr().err

    monkeypatch.setenv("SUPPLYCHAIN_KEY_PASSWORD", PASSWORD)
    assert run("keys", "generate", "--output-prefix", prefix) == 0
    key, pub = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert PASSWORD not in capsys.readouterr().out
    assert run("keys", "generate", "--output-prefix", prefix) == 2  # never overwritten

    assert run("verify", image, "--key", str(pub)) == 1  # nothing signed yet
    assert run("sign", image, "--key", str(key), "--mode", "both") == 0
    predicate = tmp_path / "sbom.json"
    predicate.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5"}))
    assert (
        run(
            "attest", image, "--key", str(key), "--predicate", str(predicate), "--type", "cyclonedx"
        )
        == 0
    )
    capsys.readouterr()

    assert (
        run("verify", image, "--key", str(pub), "--insecure-ignore-tlog", "--output", "json") == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["verified"] is True
    kinds = sorted((e["kind"], e["verified"]) for e in answer["evidence"])
    assert kinds == [
        ("attestation:att-tag", True),
        ("cosign-tag", True),
        ("sigstore-bundle", True),
    ]

    other = str(tmp_path / "other")
    assert run("keys", "generate", "--output-prefix", other, "--type", "ed25519") == 0
    assert run("verify", image, "--key", f"{other}.pub") == 1
    assert "NOT verified" in capsys.readouterr().out

    monkeypatch.setenv("SUPPLYCHAIN_KEY_PASSWORD", "wrong")
    assert run("sign", image, "--key", str(key)) == 2
    assert "wrong password" in capsys.readouterr().err
