"""``supplychain sbom`` of a local image: its layers start inflating before the command line
loads (``supplychain.cli.entry``), and the command reads from them; what does not parse, or
names another image, starts nothing or is closed, and says what it always said."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from supplychain.cli import sbom as cli_sbom
from supplychain.cli.main import main
from tests.support.images import tiny_layout

PROGRAM = [sys.executable, "-m", "supplychain.cli"]


def _purls(path: Path) -> set[str]:
    return {c["purl"] for c in json.loads(path.read_text())["components"] if "purl" in c}


def test_the_program_writes_the_sbom_of_a_local_image(tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    image = f"oci:{tiny_layout()}:tiny"
    done = subprocess.run(
        [*PROGRAM, "sbom", image, "-o", str(out), "--cache-dir", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _purls(out) == {"pkg:pypi/urllib3@1.23"}


def test_the_command_reads_the_layers_started_early(tmp_path: Path) -> None:
    image, cache = f"oci:{tiny_layout()}:tiny", str(tmp_path / "c")
    cli_sbom.start_early([image, "--cache-dir", cache])
    started = [blob for early in cli_sbom._early for blob in early.started.values()]
    assert started  # the tiny image's layers, inflating
    taken: list[object] = []
    original = cli_sbom._take_early

    def spy(*args: object) -> object:
        taken.append(found := original(*args))  # type: ignore[arg-type]
        return found

    cli_sbom._take_early = spy  # type: ignore[assignment]
    try:
        out = tmp_path / "sbom.json"
        assert main(["sbom", image, "-o", str(out), "--cache-dir", cache]) == 0
    finally:
        cli_sbom._take_early = original  # type: ignore[assignment]
    assert taken and taken[0] is not None and not cli_sbom._early
    assert _purls(out) == {"pkg:pypi/urllib3@1.23"}


def test_an_early_start_for_another_image_is_closed(tmp_path: Path) -> None:
    cache = str(tmp_path / "c")
    cli_sbom.start_early([f"oci:{tiny_layout()}:tiny", "--cache-dir", cache])
    blobs = [blob for early in cli_sbom._early for blob in early.started.values()]
    assert blobs
    assert cli_sbom._take_early("oci:elsewhere:x", Path(cache), 8 * 1024**3) is None
    assert not cli_sbom._early
    assert all(blob.handle.closed for blob in blobs)


def test_what_does_not_parse_starts_nothing_and_is_said_once(tmp_path: Path) -> None:
    image = f"oci:{tiny_layout()}:tiny"
    cli_sbom.start_early([image, "--max-layer-bytes", "lots"])
    cli_sbom.start_early(["--cache-dir"])
    cli_sbom.start_early([f"oci:{tmp_path}/missing:x"])  # the command says why, not this
    assert not cli_sbom._early
    done = subprocess.run(
        [*PROGRAM, "sbom", image, "--max-layer-bytes", "lots"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("invalid int value: 'lots'") == 1
    done = subprocess.run(
        [*PROGRAM, "sbom", f"oci:{tmp_path}/missing:x", "--cache-dir", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("supplychain sbom:") == 1
