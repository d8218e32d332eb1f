"""``supplychain reconcile``: one pass over the allowlisted registries, in this process.

Lists repositories and tags, resolves each tag, and queues every digest never seen (the workers
of ``serve`` or ``supplychain worker`` process them). Exit 0 when every registry was listed in
full, 2 when something could not be (each error is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

__all__ = ["add_parser"]


def cmd_reconcile(args: argparse.Namespace) -> int:
    from supplychain.cli.main import EXIT_OTHER, _migrate, _settings
    from supplychain.reconcile import summary
    from supplychain.service import build_service

    settings = _settings()
    _migrate(settings, required=False)
    service = build_service(settings, policy_file=None)
    hosts = [host.lower() for host in args.registry or ()]
    unknown = sorted(set(hosts) - service.client.allowed)
    if unknown:
        print(f"supplychain: not in SUPPLYCHAIN_REGISTRIES: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_OTHER
    reconciler = service.reconciler()
    if args.page_size is not None:
        reconciler.page_size = args.page_size
    try:
        report = reconciler.run(hosts or None)
    finally:
        service.db.dispose()
        service.client.close()
    if args.output == "json":
        document = {**asdict(report), "queued": list(report.queued), "errors": list(report.errors)}
        print(json.dumps(document, indent=2))
    else:
        for one in report.registries:
            print(
                f"{one.registry}: {one.repositories} repositories, {one.tags} tags, "
                f"{len(one.queued)} queued, {one.known} known, {one.skipped} skipped, "
                f"{len(one.errors)} errors, {one.requests} requests"
            )
            for pinned in one.queued:
                print(f"  queued {pinned}")
        for error in report.errors:
            print(f"supplychain: reconcile: {error}", file=sys.stderr)
        print(summary(report), file=sys.stderr)
    return EXIT_OTHER if report.errors else 0


def _page_size(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError("from 1 to 10000")
    return number


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reconcile``."""
    command = sub.add_parser(
        "reconcile", help="list the allowlisted registries and queue every digest never seen"
    )
    command.add_argument(
        "--registry",
        action="append",
        help="only this allowlisted host[:port] (repeatable; default: every one)",
    )
    command.add_argument(
        "--page-size",
        type=_page_size,
        help="entries per catalog or tag-list page, n (default SUPPLYCHAIN_RECONCILE_PAGE_SIZE)",
    )
    command.add_argument(
        "--output", choices=("table", "json"), default="table", help="table (default) or json"
    )
    command.set_defaults(func=cmd_reconcile)
