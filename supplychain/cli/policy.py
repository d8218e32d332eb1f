"""``supplychain policy test FILE --image REF`` and ``supplychain waiver create|list|revoke``.

``policy test`` loads the recorded facts of an image and calls the one decision with the policy
in FILE, printing the verdict and the rules and scope that decided; it records nothing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

EXIT_ERROR = 2


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from None


def _find_image(session: Any, ref: str) -> Any:
    from sqlalchemy import select

    from supplychain.evidence import models
    from supplychain.reference import parse_reference

    parsed = parse_reference(ref)
    digest = parsed.digest
    if digest is None:  # the tag's latest recorded digest (no registry call: nothing written)
        digest = session.scalars(
            select(models.TagEvent.digest)
            .where(
                models.TagEvent.host == parsed.registry,
                models.TagEvent.repository == parsed.repository,
                models.TagEvent.tag == parsed.tag,
            )
            .order_by(models.TagEvent.seen_at.desc(), models.TagEvent.id.desc())
            .limit(1)
        ).first()
    return session.scalars(
        select(models.Image).where(
            models.Image.host == parsed.registry,
            models.Image.repository == parsed.repository,
            models.Image.digest == digest,
        )
    ).first()


def cmd_policy(args: argparse.Namespace) -> int:
    from supplychain.cli.main import EXIT, EXIT_OTHER, _settings
    from supplychain.decide.decider import Decider
    from supplychain.decide.policy import load_policy
    from supplychain.evidence.database import Database
    from supplychain.interface import PolicyError
    from supplychain.reference import ReferenceError

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"supplychain: policy: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.image is None:  # a check of the file only
        _print({"policy": {"name": policy.name, "digest": policy.digest}, "valid": True})
        return 0
    settings = _settings(writable=False)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            image = _find_image(session, args.image)
            if image is None:
                print(f"supplychain: policy test: {args.image} is not recorded", file=sys.stderr)
                return EXIT_OTHER
            decider = Decider(policy, max_depth=settings.index_max_depth)
            verdict = decider.verdict(session, image, platform=args.platform, now=args.at)
            label = f"{image.host}/{image.repository}@{image.digest}"
            session.rollback()  # read only: nothing this command does is recorded
    except ReferenceError as exc:
        print(f"supplychain: policy test: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.dispose()
    _print(
        {
            "image": label,
            "decision": verdict.decision,
            "reasons": list(verdict.reasons),
            "policy": {"name": verdict.policy, "digest": verdict.policy_digest},
            "scope": verdict.details.get("scope"),
            "rules": verdict.details.get("rules", []),
            "waivers": verdict.details.get("waivers", []),
            "warnings": verdict.details.get("warnings", []),
            "evaluated_at": verdict.evaluated_at.isoformat() if verdict.evaluated_at else None,
        }
    )
    return EXIT.get(verdict.decision, EXIT_OTHER)


def cmd_waiver(args: argparse.Namespace) -> int:
    from supplychain.cli.main import _migrate, _settings
    from supplychain.decide.waiverstore import WaiverError, WaiverRequest, create, listing, revoke
    from supplychain.evidence import models
    from supplychain.evidence.database import Database

    settings = _settings()
    _migrate(settings, required=False)
    db = Database(settings.database_url)
    try:
        with db.session(write=args.action != "list") as session:
            if args.action == "list":
                _print(listing(session, revoked=args.revoked))
                return 0
            if args.action == "revoke":
                _print(revoke(session, args.id, args.actor, models.utcnow()))
                return 0
            fields = ("owner", "reason", "ticket", "expires_at", "digest", "repository", "cve")
            values = {k: getattr(args, k) for k in (*fields, "package", "rule", "justification")}
            _print(create(session, WaiverRequest(**values), args.actor, models.utcnow()))
            return 0
    except WaiverError as exc:
        print(f"supplychain: waiver {args.action}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.dispose()


def add_parser(sub: Any) -> None:
    """Add ``policy`` and ``waiver`` to the ``supplychain`` subcommands."""
    policy = sub.add_parser("policy", help="policy files")
    actions = policy.add_subparsers(dest="action", required=True)
    test = actions.add_parser(
        "test", help="check a policy file, or decide on a recorded image with it (records nothing)"
    )
    test.add_argument("file", type=Path, help="the policy YAML")
    test.add_argument("--image", help="registry/repo:tag or registry/repo@sha256:… (recorded)")
    test.add_argument("--platform", help="decide an index for this platform only (os/arch)")
    test.add_argument("--at", type=_when, help="decide at this ISO time (default: now)")
    policy.set_defaults(func=cmd_policy)

    waiver = sub.add_parser("waiver", help="accepted exceptions to the policy, until they expire")
    wactions = waiver.add_subparsers(dest="action", required=True)
    create = wactions.add_parser("create", help="record a waiver (audited)")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--digest", help="scope: one image digest")
    scope.add_argument("--repository", help="scope: registry/repository glob pattern")
    what = create.add_mutually_exclusive_group(required=True)
    what.add_argument("--cve", help="the advisory id or alias waived")
    what.add_argument("--package", help="the package name waived")
    what.add_argument("--rule", help="the policy rule waived (e.g. signatures)")
    create.add_argument("--owner", required=True, help="who owns the risk")
    create.add_argument("--reason", required=True, help="why it is accepted")
    create.add_argument("--ticket", required=True, help="the tracking ticket")
    create.add_argument(
        "--expires", dest="expires_at", type=_when, required=True, help="ISO time with zone"
    )
    create.add_argument("--justification", help="OpenVEX not_affected justification")
    listed = wactions.add_parser("list", help="live waivers, newest first")
    listed.add_argument("--revoked", action="store_true", help="include revoked waivers")
    revoked = wactions.add_parser("revoke", help="revoke a waiver (audited)")
    revoked.add_argument("id", type=int, help="the waiver id")
    for command in (create, listed, revoked):
        command.add_argument("--actor", default=getpass.getuser(), help="who makes the change")
    waiver.set_defaults(func=cmd_waiver)
