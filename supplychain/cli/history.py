"""``supplychain history …``: the auditors' history, asked of the service's API.

Through the API, not on the database: an auditor holds an ``auditor`` token (read-only by its
role, revocable, every use audited), never the database's credentials, and sees exactly what
the API answers. The token comes from ``--token-file`` or ``SUPPLYCHAIN_TOKEN``, the server from
``--server`` or ``SUPPLYCHAIN_SERVER``. Lists follow ``next_cursor`` with ``--all``; downloads
are hashed and compared with the digest the server names before a byte is written.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from supplychain.cli.client import read_token
from supplychain.cli.main import EXIT, EXIT_OTHER

__all__ = ["add_parser"]

MAX_ANSWER = 512 * 1024 * 1024
KINDS = ("attestation", "gate", "sbom", "scan", "signature", "verdict", "vex", "waiver")


class _Failed(Exception):
    """The server could not be asked, or did not answer 2xx."""


def _server(args: argparse.Namespace) -> str:
    server: str = args.server or os.environ.get("SUPPLYCHAIN_SERVER", "http://127.0.0.1:8080")
    if not server.startswith(("http://", "https://")):
        raise _Failed(f"--server must be an http(s) URL: {server}")
    return server.rstrip("/")


def _get(args: argparse.Namespace, path: str, params: dict[str, Any]) -> tuple[bytes, Any]:
    """(body, headers) of a 2xx answer to GET ``path``; :class:`_Failed` otherwise."""
    query = urllib.parse.urlencode(
        [
            (k, v)
            for k, value in params.items()
            if value is not None
            for v in (value if isinstance(value, list) else [value])
        ]
    )
    url = f"{_server(args)}{path}" + (f"?{query}" if query else "")
    headers = {}
    try:
        token = read_token(args.token_file)
    except ValueError as exc:
        raise _Failed(str(exc)) from None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310
            return response.read(MAX_ANSWER), response.headers
    except urllib.error.HTTPError as error:
        body = error.read(64 * 1024)
        try:
            reason = json.loads(body).get("error")
        except (ValueError, AttributeError):
            reason = None
        text = reason or body[:200].decode("utf-8", "replace")
        text = "".join(c if c.isprintable() else " " for c in str(text)).strip()
        raise _Failed(f"server answered HTTP {error.code}: {text or 'no reason given'}") from None
    except (OSError, ValueError) as exc:
        raise _Failed(f"server unreachable: {exc}") from None


def _pages(args: argparse.Namespace, path: str, params: dict[str, Any]) -> int:
    """Print one page, or every page with ``--all`` (CSV: one header)."""
    cursor = args.cursor
    items: list[Any] = []
    first: dict[str, Any] = {}
    wrote_header = False
    while True:
        query = {**params, "limit": args.limit, "format": args.format, "cursor": cursor}
        body, headers = _get(args, path, query)
        if args.format == "csv":
            text = body.decode("utf-8")
            if wrote_header:
                text = text.split("\r\n", 1)[1] if "\r\n" in text else ""
            sys.stdout.write(text)
            wrote_header = True
            cursor = headers.get("Next-Cursor")
        else:
            page = json.loads(body)
            first = first or page
            items += page["items"]
            cursor = page["next_cursor"]
        if not args.all or not cursor:
            break
    if args.format == "json":
        json.dump({**first, "items": items, "next_cursor": cursor}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif cursor:
        print(f"more: --cursor {cursor}", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace, path: str) -> int:
    body, headers = _get(args, path, {})
    named = (headers.get("ETag") or "").strip('"')
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(named, actual):
        raise _Failed(f"download does not match its digest: server named {named!r}, got {actual}")
    if args.out is None:
        sys.stdout.buffer.write(body)
    else:
        args.out.write_bytes(body)
    print(f"{actual} {headers.get('Content-Type')} {len(body)} bytes", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    what = args.history_action
    try:
        if what == "image":
            params = {"kind": args.kind, "since": args.since, "until": args.until}
            return _pages(args, f"/v1/history/images/{urllib.parse.quote(args.digest)}", params)
        if what == "repository":
            params = {
                "repository": args.name,
                "kind": args.kind,
                "since": args.since,
                "until": args.until,
            }
            return _pages(args, "/v1/history/repositories", params)
        if what == "attestations":
            params = {
                "subject": args.subject,
                "predicate_type": args.predicate_type,
                "since": args.since,
                "until": args.until,
            }
            return _pages(args, "/v1/history/attestations", params)
        if what == "verdicts":
            gate_only = "true" if args.gate_only else None
            params = {
                "decision": args.decision,
                "gate_only": gate_only,
                "repository": args.repository,
                "since": args.since,
                "until": args.until,
            }
            return _pages(args, "/v1/history/verdicts", params)
        if what == "affected":
            params = {"at": args.at, "purl": args.purl, "versions": args.versions, "cve": args.cve}
            return _pages(args, "/v1/history/affected", params)
        if what == "decision":
            params = {
                "digest": args.digest,
                "at": args.at,
                "repository": args.repository,
                "platform": args.platform,
            }
            body, _ = _get(args, "/v1/history/decision", params)
            answer = json.loads(body)
            json.dump(answer, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return EXIT.get(str(answer.get("decision")), EXIT_OTHER)
        if what == "sbom":
            return _download(args, f"/v1/history/sboms/{args.scan_id}")
        return _download(args, f"/v1/history/attestations/{args.attestation_id}/envelope")
    except _Failed as exc:
        print(f"supplychain: {exc}", file=sys.stderr)
        return EXIT_OTHER


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--server", help="service URL (default SUPPLYCHAIN_SERVER or http://127.0.0.1:8080)"
    )
    command.add_argument(
        "--token-file", type=Path, help="file holding the auditor token (default SUPPLYCHAIN_TOKEN)"
    )
    command.add_argument("--timeout", type=float, default=120, help="seconds per request")
    command.set_defaults(func=_run)


def _listing(command: argparse.ArgumentParser, *, times: bool = True) -> None:
    _common(command)
    command.add_argument("--format", choices=("json", "csv"), default="json", help="output")
    command.add_argument("--limit", type=int, default=100, help="rows per page (1-1000)")
    command.add_argument("--cursor", help="start after this next_cursor of an earlier page")
    command.add_argument("--all", action="store_true", help="follow next_cursor to the end")
    if times:
        command.add_argument("--since", help="ISO 8601 time with a zone: from then on")
        command.add_argument("--until", help="ISO 8601 time with a zone: before then")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``history`` and its subcommands."""
    history = sub.add_parser("history", help="the auditors' history (through the API)")
    actions = history.add_subparsers(dest="history_action", metavar="ACTION")
    image = actions.add_parser("image", help="every event that touched an image digest")
    image.add_argument("digest", help="sha256:…")
    repository = actions.add_parser("repository", help="events of a repository in a time range")
    repository.add_argument("name", help="registry/repository (r.example/team/app)")
    for command in (image, repository):
        _listing(command)
        command.add_argument("--kind", action="append", choices=KINDS, help="only these kinds")
    attestations = actions.add_parser("attestations", help="attestations by subject and type")
    _listing(attestations)
    attestations.add_argument("--subject", help="the image digest attested")
    attestations.add_argument("--predicate-type", help="the in-toto predicate type")
    verdicts = actions.add_parser("verdicts", help="verdicts and gate answers by decision")
    _listing(verdicts)
    verdicts.add_argument("--decision", choices=("allow", "deny", "pending"), help="only these")
    verdicts.add_argument("--gate-only", action="store_true", help="gate answers only")
    verdicts.add_argument("--repository", help="registry/repository")
    affected = actions.add_parser(
        "affected", help="images holding a package or advisory at a time, and their gate answers"
    )
    _listing(affected, times=False)
    affected.add_argument("--at", required=True, help="ISO 8601 time with a zone")
    affected.add_argument("--purl", help="package glob (pkg:pypi/requests, pkg:npm/*)")
    affected.add_argument("--versions", help="PEP 440 range with --purl (<2.20)")
    affected.add_argument("--cve", help="advisory id or alias")
    decision = actions.add_parser(
        "decision", help="the answer for a digest at a time, and why (exit 0 allow, 1 deny)"
    )
    _common(decision)
    decision.add_argument("digest", help="sha256:…")
    decision.add_argument("--at", required=True, help="ISO 8601 time with a zone")
    decision.add_argument("--repository", help="registry/repository, if seen in several")
    decision.add_argument("--platform", help="os/arch of an index")
    sbom = actions.add_parser("sbom", help="download a scan's SBOM as stored (digest checked)")
    sbom.add_argument("scan_id", type=int, help="the scan's id (history image shows it)")
    attestation = actions.add_parser(
        "attestation", help="download an attestation's envelope as found (digest checked)"
    )
    attestation.add_argument("attestation_id", type=int, help="the attestation's id")
    for command in (sbom, attestation):
        _common(command)
        command.add_argument("--out", type=Path, help="write here (default: stdout)")
