"""An image config's run settings, as recorded with a scan (``scans.image_config``) and read back.

Only what policies read is kept: the user, exposed ports, the *names* of environment variables
(their values may be secrets, so they are never stored), entrypoint, command, working directory
and labels. The config bytes were verified against the manifest by the source stage.
"""

from __future__ import annotations

import json
from typing import Any

from supplychain.interface import ImageConfig

__all__ = ["config_from_row", "config_to_row", "parse_config"]

MAX_ITEMS = 256
"""Ports, variables, arguments and labels kept at most (a hostile config can list millions)."""
MAX_TEXT = 1024
"""Characters kept of each string."""


def _text(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(_text(v) for v in value[:MAX_ITEMS] if isinstance(v, str))


def parse_config(data: bytes) -> ImageConfig | None:
    """The run settings of an OCI/Docker image config (None when it is not one)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    run = document.get("config")
    if not isinstance(run, dict):
        run = {}
    ports = run.get("ExposedPorts")
    labels = run.get("Labels")
    return ImageConfig(
        user=_text(run.get("User")),
        exposed_ports=tuple(sorted(_text(p) for p in ports))[:MAX_ITEMS]
        if isinstance(ports, dict)
        else (),
        env_names=tuple(e.split("=", 1)[0] for e in _texts(run.get("Env"))),
        entrypoint=_texts(run.get("Entrypoint")),
        cmd=_texts(run.get("Cmd")),
        working_dir=_text(run.get("WorkingDir")),
        labels=tuple(sorted((_text(k), _text(v)) for k, v in labels.items()))[:MAX_ITEMS]
        if isinstance(labels, dict)
        else (),
    )


def config_to_row(config: ImageConfig | None) -> dict[str, Any] | None:
    """The JSON stored in ``scans.image_config``."""
    if config is None:
        return None
    return config.as_json()


def config_from_row(row: dict[str, Any] | None) -> ImageConfig | None:
    """The config back from ``scans.image_config`` (None when not recorded)."""
    if not isinstance(row, dict):
        return None
    labels = row.get("labels")
    return ImageConfig(
        user=_text(row.get("user")),
        exposed_ports=_texts(row.get("exposed_ports")),
        env_names=_texts(row.get("env_names")),
        entrypoint=_texts(row.get("entrypoint")),
        cmd=_texts(row.get("cmd")),
        working_dir=_text(row.get("working_dir")),
        labels=tuple(sorted((str(k), _text(v)) for k, v in labels.items()))
        if isinstance(labels, dict)
        else (),
    )
