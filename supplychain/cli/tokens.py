"""``supplychain tokens create|list|revoke``: API tokens, straight on the database.

These commands migrate the database first, so a new install makes its first admin and CI tokens
before ``serve`` ever started. A new token is printed once, on stdout, and never stored.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from datetime import UTC, datetime, timedelta

from supplychain.access.tokens import ROLES, TokenError, TokenStore

__all__ = ["add_parser", "parse_expiry"]

DURATION = re.compile(r"(\d{1,6})([hd])", re.ASCII)


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h`` or an ISO 8601 time with a zone; raise ValueError otherwise."""
    now = now or datetime.now(UTC)
    match = DURATION.fullmatch(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now + (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError("an ISO time needs a zone (…Z or +00:00)")
    return when.astimezone(UTC)


def _store() -> TokenStore:
    from supplychain.cli.main import _migrate, _settings
    from supplychain.evidence.database import Database

    settings = _settings(writable=False)
    _migrate(settings, required=True)
    return TokenStore(Database(settings.database_url), settings.token_pepper)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def cmd_create(args: argparse.Namespace) -> int:
    try:
        expires = parse_expiry(args.expires) if args.expires else None
    except ValueError as exc:
        print(f"supplychain: --expires: {exc}", file=sys.stderr)
        return 2
    try:
        token = _store().create(
            args.name, args.role, actor=_actor(), source=args.source, expires_at=expires
        )
    except TokenError as exc:
        print(f"supplychain: {exc}", file=sys.stderr)
        return 2
    print(f"token {args.name!r} ({args.role}) created; it is shown this once:", file=sys.stderr)
    print(token)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = _store().list()
    print(f"{'NAME':<24} {'ROLE':<8} {'SOURCE':<12} {'EXPIRES':<20} {'STATE':<8} LAST USED")
    now = datetime.now(UTC)
    for t in rows:
        state = (
            "revoked"
            if t.revoked_at
            else "expired"
            if t.expires_at and t.expires_at <= now
            else "active"
        )
        expires = t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "never"
        used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "-"
        print(f"{t.name:<24} {t.role:<8} {t.source or '-':<12} {expires:<20} {state:<8} {used}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        _store().revoke(args.name, actor=_actor())
    except TokenError as exc:
        print(f"supplychain: {exc}", file=sys.stderr)
        return 2
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tokens`` and its subcommands."""
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    actions = tokens.add_subparsers(dest="tokens_action", metavar="ACTION")
    create = actions.add_parser("create", help="create a token (printed once)")
    create.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    create.add_argument("--name", required=True, help="unique name (the audit log's actor)")
    create.add_argument("--source", help="webhook tokens: the one source (distribution, harbor…)")
    create.add_argument("--expires", help="30d, 12h or an ISO 8601 time (default: never)")
    create.set_defaults(func=cmd_create)
    actions.add_parser("list", help="list tokens (never their secret)").set_defaults(func=cmd_list)
    revoke = actions.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name", help="the token's name")
    revoke.set_defaults(func=cmd_revoke)
