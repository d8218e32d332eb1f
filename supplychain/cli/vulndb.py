"""``supplychain vulndb status|update|import FILE``, ``supplychain rematch`` and ``vex upload``.

Exit codes: 0 done; 1 a revocation happened (``rematch``) or the DB is older than allowed
(``vulndb status``); 2 an error (nothing was changed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supplychain.config import Settings

__all__ = ["add_parser", "revocation_announcer"]

EXIT_ERROR = 2
log = logging.getLogger("supplychain.cli.main")


def revocation_announcer(settings: Settings) -> Any:
    """The announcer the settings ask for: a webhook, or the log line alone."""
    from supplychain.rematch.revocations import LogAnnouncer, WebhookAnnouncer

    if not settings.revocation_webhook:
        return LogAnnouncer()
    return WebhookAnnouncer(settings.revocation_webhook, secret=settings.revocation_webhook_secret)


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_db(answer: dict[str, Any], output: str) -> None:
    """The DB state, as JSON or for people."""
    if output == "json":
        _print(answer)
        return
    if not answer["installed"]:
        print(f"no Trivy vulnerability DB in {answer['path']}")
        print(f"  {answer['advice']}")
        return
    limit = answer["max_age_hours"]
    verdict = "" if limit is None else (" (too old)" if answer["age_hours"] > limit else " (ok)")
    print(f"updated at: {answer['updated_at']} ({answer['age_hours']:g} hours ago){verdict}")
    if limit is not None:
        print(f"max age:    {limit:g} hours (SUPPLYCHAIN_MAX_DB_AGE_HOURS)")
    print(f"digest:     {answer['digest']}")
    print(f"path:       {answer['path']} ({answer['versions']} versions kept)")
    if "new" in answer:
        print(f"new:        {'yes' if answer['new'] else 'no, already installed'}")


def _store(settings: Settings) -> Any:
    from supplychain.stages.scanner import TrivyRunner
    from supplychain.stages.vulndb import VulnDbStore

    runner = TrivyRunner(
        settings.trivy_path,
        settings.trivy_cache_dir,
        offline=settings.trivy_offline,
        timeout=settings.trivy_timeout,
    )
    return VulnDbStore(settings.trivy_cache_dir, runner)


def cmd_vulndb(args: argparse.Namespace) -> int:
    from supplychain.cli.main import _migrate, _settings
    from supplychain.evidence.database import Database
    from supplychain.stages.scanner import missing_db_advice
    from supplychain.stages.vulndb import VulnDbError, record_db

    settings = _settings()
    store = _store(settings)
    repository = getattr(args, "repository", None) or settings.db_repository
    try:
        if args.action == "status":
            info = store.current()
        elif args.action == "import":
            info = store.import_archive(args.file)
        else:
            info = store.update(repository)
    except VulnDbError as exc:
        print(f"supplychain: vulndb {args.action}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if info is None:
        advice = missing_db_advice(settings.trivy_offline)
        missing = {"installed": False, "path": str(settings.trivy_cache_dir), "advice": advice}
        _print_db(missing, args.output)
        return EXIT_ERROR
    limit = settings.max_db_age_hours
    age = info.age_hours()
    answer: dict[str, Any] = {
        "installed": True,
        "digest": info.digest,
        "updated_at": info.updated_at.isoformat(),
        "age_hours": round(age, 2),
        "max_age_hours": limit,
        "path": str(info.path),
        "versions": len(store.versions()),
    }
    if args.action != "status":
        _migrate(settings, required=False)
        db = Database(settings.database_url)
        try:
            with db.session(write=True) as session:
                origin = str(args.file) if args.action == "import" else repository
                answer["new"] = record_db(session, info, source=args.action, origin=origin)
        finally:
            db.dispose()
        answer["pruned"] = [str(p) for p in store.prune()]
    _print_db(answer, args.output)
    if args.action != "status" and args.rematch and answer["new"]:
        return _rematch(settings, scope_all=False, since=None, policy=args.policy)
    return 1 if limit is not None and age > limit else 0


def _rematch(
    settings: Settings, *, scope_all: bool, since: datetime | None, policy: Path | None
) -> int:
    from supplychain.cli.main import _migrate
    from supplychain.rematch.batch import rematch_planned
    from supplychain.rematch.run import (
        Rematcher,
        RematchPlan,
        TrivySbomMatcher,
        plan_rematch,
        select_scans,
    )
    from supplychain.service import build_service

    _migrate(settings, required=False)
    current = _store(settings).current()
    if current is None:
        print("supplychain: rematch: no advisory DB installed", file=sys.stderr)
        return EXIT_ERROR
    service = build_service(settings, policy_file=policy)
    try:
        with service.db.session() as session:
            if scope_all or since:  # asked for: every selected SBOM, whole
                scan_ids = select_scans(session, since=since)
                plan = RematchPlan(tuple(scan_ids), (), tuple(scan_ids))
            else:  # only what the DB change can affect; the rest moves to the new DB
                db_file = current.path / "db" / "trivy.db"
                plan = plan_rematch(session, current.path.parent, current.digest, db_file)
        advance = list(plan.advance)
        rematcher = Rematcher(
            service.db,
            TrivySbomMatcher(service.trivy),
            service.decider,
            revocation_announcer(settings),
            workers=max(1, settings.workers),
        )
        report = rematch_planned(rematcher, service.trivy, plan)
        if advance:
            rematcher.advance(advance, current.digest, current.updated_at)
    finally:
        service.db.dispose()
    _print(
        {
            "selected": report.selected,
            "rematched": report.rematched,
            "changed": report.changed,
            "revocations": report.revocations,
            "advanced": len(advance),
            "whole": len(plan.whole),
            "failed": list(report.failed),
            "seconds": report.seconds,
        }
    )
    if report.failed:
        return EXIT_ERROR
    return 1 if report.revocations else 0


def cmd_rematch(args: argparse.Namespace) -> int:
    from supplychain.cli.main import _settings

    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return _rematch(_settings(), scope_all=args.all, since=since, policy=args.policy)


def cmd_vex(args: argparse.Namespace) -> int:
    from supplychain.cli.main import _migrate, _settings
    from supplychain.decide.vex import VexError, record_vex
    from supplychain.evidence.database import Database

    settings = _settings()
    _migrate(settings, required=False)
    db = Database(settings.database_url)
    try:
        with db.session(write=True) as session:
            count = record_vex(session, args.file.read_bytes(), source="upload", image=args.image)
    except (OSError, VexError) as exc:
        print(f"supplychain: vex upload: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.dispose()
    _print({"statements": count})
    return 0


def add_parser(sub: Any) -> None:
    """Add ``vulndb``, ``rematch`` and ``vex`` to the ``supplychain`` subcommands."""
    vulndb = sub.add_parser("vulndb", help="the shared Trivy advisory DB")
    actions = vulndb.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="the DB scans use, its age and digest")
    update = actions.add_parser("update", help="download with Trivy (or from an OCI mirror)")
    update.add_argument(
        "--repository", help="OCI DB repository (default SUPPLYCHAIN_DB_REPOSITORY)"
    )
    imported = actions.add_parser("import", help="install a db.tar.gz (air-gapped sites)")
    imported.add_argument("file", type=Path, help="Trivy DB archive (db.tar.gz)")
    for command in (status, update, imported):
        command.add_argument(
            "--output",
            choices=["table", "json"],
            default="table",
            help="table for people (default), json for machines",
        )
    for command in (update, imported):
        command.add_argument(
            "--rematch", action="store_true", help="rematch SBOMs if the DB is new"
        )
        command.add_argument("--policy", type=Path, help="policy YAML for the rematch")
    vulndb.set_defaults(func=cmd_vulndb)

    rematch = sub.add_parser(
        "rematch", help="rematch stored SBOMs against the current DB (default: not yet matched)"
    )
    scope = rematch.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every image's latest SBOM")
    scope.add_argument("--since", help="SBOMs stored since this ISO date/time")
    rematch.add_argument("--policy", type=Path, help="policy YAML (default: deny CRITICAL)")
    rematch.set_defaults(func=cmd_rematch)

    vex = sub.add_parser("vex", help="VEX documents")
    vex_actions = vex.add_subparsers(dest="action", required=True)
    upload = vex_actions.add_parser("upload", help="store an OpenVEX or CycloneDX VEX document")
    upload.add_argument("file", type=Path, help="the VEX document (JSON)")
    upload.add_argument("--image", help="image digest the document is about (sha256:…)")
    vex.set_defaults(func=cmd_vex)
