"""The command line as a newcomer meets it: help for every option, the README's table complete."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from supplychain import __version__
from supplychain.cli.main import commands, main, parser

README = Path(__file__).resolve().parent.parent / "README.md"
SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def options(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if not isinstance(a, SKIP)]


def test_every_option_and_argument_has_help() -> None:
    missing = [
        (" ".join(path), action.option_strings or action.dest)
        for path, command in commands(parser())
        for action in options(command)
        if not action.help
    ]
    assert missing == []


def test_the_readme_command_table_names_every_command_and_option() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Commands") : text.index("## HTTP API")]
    rows = [line for line in section.splitlines() if line.startswith("| `supplychain ")]
    missing = []
    for path, command in commands(parser()):
        if not path:
            continue
        mine = " ".join(r for r in rows if r.startswith(f"| `supplychain {path[0]} "))
        words = [
            *path[1:],
            *(max(a.option_strings, key=len) for a in options(command) if a.option_strings),
        ]
        missing += [
            f"{' '.join(path)}: {word}"
            for word in words if not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", mine)
        ]  # fmt: skip
        if not mine:
            missing.append(" ".join(path))
    assert missing == []


def test_version_and_bare_groups_print_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"supplychain {__version__}\n"
    assert main(["keys"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: supplychain keys") and "generate" in out
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_log_level_has_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--log-level", "LOUD"])
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


def test_extension_table_names_the_commands_each_module_adds() -> None:
    """``supplychain sbom`` imports only the module adding ``sbom``: the table must be exact."""
    import importlib

    from supplychain.cli.main import EXTENSIONS

    for module, names in EXTENSIONS.items():
        top = argparse.ArgumentParser()
        sub = top.add_subparsers()
        importlib.import_module(module).add_parser(sub)
        assert tuple(sub.choices) == names, module


def test_sbom_does_not_import_the_service() -> None:
    """A fresh `supplychain sbom --help` loads no database, web, token or webhook code."""
    import subprocess
    import sys

    code = (
        "import sys; from supplychain.cli.main import main\n"
        "try: main(['sbom', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.splitlines()[-1]
    for heavy in ("sqlalchemy", "fastapi", "cryptography", "registry_hooks", "requests"):
        assert f"'{heavy}'" not in loaded, heavy
