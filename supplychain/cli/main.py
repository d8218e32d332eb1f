"""supplychain: secure container images from registry to deploy.

Exit codes: 0 allow (or done), 1 deny, 2 anything else (pending, timeout, error): fail closed.
Settings come from SUPPLYCHAIN_* environment variables (see the README).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supplychain.cli import client

if TYPE_CHECKING:
    from supplychain.config import Settings

EXIT = {"allow": 0, "deny": 1}
"""Exit codes: allow 0, deny 1, anything else (pending, timeout, error) 2."""
EXIT_OTHER = 2
CORE_COMMANDS = frozenset({"serve", "worker", "db", "gate", "scan"})
EXTENSIONS = {
    "supplychain.cli.sbom": ("sbom",),
    "supplychain.cli.signing": ("keys", "sign", "attest", "verify"),
    "supplychain.cli.vulndb": ("vulndb", "rematch", "vex"),
    "supplychain.cli.tokens": ("tokens",),
    "supplychain.cli.policy": ("policy", "waiver"),
    "supplychain.cli.audit": ("audit",),
    "supplychain.cli.reconcile": ("reconcile",),
    "supplychain.cli.history": ("history",),
}
"""Modules adding subcommands with ``add_parser(subparsers)``, with the commands each adds.

A command line naming one of them imports that module only: ``supplychain sbom`` does not pay
for the database, token or signing code the other commands import (a test checks this table
against what each module adds)."""
OUTPUTS = ("table", "json", "sarif", "junit", "markdown")
"""``--output`` formats (:mod:`supplychain.report`)."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = logging.getLogger("supplychain.cli")


def _settings(*, writable: bool = True) -> Settings:
    """Settings, and (``writable``) a data dir we can write to; else one line and exit 2."""
    from supplychain.config import ConfigError, check_data_dir, load_settings

    try:
        settings = load_settings()
        if writable:
            check_data_dir(settings.data_dir)
        return settings
    except ConfigError as exc:
        print(f"supplychain: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_OTHER) from None


def _migrate(settings: Settings, *, required: bool) -> None:
    from sqlalchemy.exc import DBAPIError

    try:
        _upgrade_or_check(settings, required=required)
    except DBAPIError as exc:
        lines = str(exc.orig or exc).strip().splitlines() or [type(exc).__name__]
        where = "SUPPLYCHAIN_DATABASE_URL"
        print(f"supplychain: {where}: cannot use the database: {lines[0][:300]}", file=sys.stderr)
        raise SystemExit(EXIT_OTHER) from None


def _upgrade_or_check(settings: Settings, *, required: bool) -> None:
    from supplychain.evidence.database import Database

    db = Database(settings.database_url)
    try:
        if settings.is_sqlite or required:
            db.upgrade()
            return
        from alembic.script import ScriptDirectory

        from supplychain.evidence.database import migrations_dir

        head = ScriptDirectory(str(migrations_dir())).get_current_head()
        if db.current_revision() != head:
            print(
                "supplychain: database is not migrated: run `supplychain db upgrade`",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_OTHER)
    finally:
        db.dispose()


def _record_policy(service: Any, actor: str) -> None:
    """Audit the policy this process decides with when it changed (a fact of the audit log)."""
    from supplychain.evidence.dbutil import record_policy

    policy = service.decider.policy
    with service.db.session(write=True) as session:
        record_policy(session, actor, policy.name, policy.digest)


def _warn_without_db(service: Any) -> None:
    """One start-up line when scans cannot run yet: no advisory DB, and the command to run."""
    from supplychain.stages.scanner import missing_db_advice

    if not service.trivy.has_db():
        log.warning(
            "no Trivy vulnerability DB in %s: %s",
            service.trivy.cache_dir,
            missing_db_advice(service.settings.trivy_offline),
        )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from supplychain import logs
    from supplychain.api.app import create_app
    from supplychain.api.processes import freeze_startup
    from supplychain.service import build_service

    settings = _settings()
    logs.configure(args.log_level)
    _migrate(settings, required=False)
    service = build_service(settings, policy_file=args.policy)
    _warn_without_db(service)
    _record_policy(service, "serve")
    if not service.tokens.list():
        log.warning(
            "no API token exists yet: every call but /healthz, /readyz and /metrics is refused; "
            "make the first with `supplychain tokens create --role admin --name first-admin` "
            "(and --role ci for CI, --role auditor for history)"
        )
    workers = settings.workers if args.workers is None else args.workers
    host, _, port = (args.listen or settings.listen).rpartition(":")
    cert = args.tls_cert or settings.tls_cert
    key = args.tls_key or settings.tls_key
    if (cert is None) != (key is None):
        print("supplychain: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_OTHER
    listen: dict[str, Any] = {
        "host": host.strip("[]"),
        "port": int(port),
        "ssl_certfile": cert,
        "ssl_keyfile": key,
    }
    processes = args.processes if args.processes is not None else settings.api_processes
    if processes > 1:
        return _serve_processes(service, args, processes, workers, listen)
    app = create_app(service, workers=workers)
    freeze_startup()
    # uvicorn turns SIGTERM into a graceful exit; the app's lifespan then shuts the workers down.
    uvicorn.run(app, log_config=None, access_log=False, **listen)
    return 0


def _serve_processes(
    service: Any, args: argparse.Namespace, processes: int, workers: int, listen: dict[str, Any]
) -> int:
    """``processes`` HTTP processes (:mod:`supplychain.api.processes`); the job workers here."""
    import uvicorn

    from supplychain.api.processes import CHILD_LOG_LEVEL, CHILD_POLICY
    from supplychain.queue.pool import WorkerPool

    os.environ[CHILD_POLICY] = str(args.policy or "")
    os.environ[CHILD_LOG_LEVEL] = args.log_level
    pool = WorkerPool(service.worker, workers)
    pool.start()
    try:  # uvicorn stops the processes on SIGTERM, then returns
        uvicorn.run(
            "supplychain.api.processes:child_app",
            factory=True,
            workers=processes,
            log_config=None,
            access_log=False,
            **listen,
        )
    finally:
        pool.shutdown(service.settings.shutdown_grace_seconds)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from supplychain import logs
    from supplychain.queue.pool import WorkerPool
    from supplychain.service import build_service

    settings = _settings()
    logs.configure(args.log_level)
    _migrate(settings, required=False)
    service = build_service(settings, policy_file=args.policy)
    _warn_without_db(service)
    _record_policy(service, "worker")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    pool = WorkerPool(service.worker, args.count)
    pool.start()
    while not stopping.wait(1.0):
        if pool.wait(0):
            break
    pool.shutdown(settings.shutdown_grace_seconds)
    service.db.dispose()
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings(writable=False)
    _migrate(settings, required=True)
    print("database migrated to the latest schema")
    return 0


def _print_answer(answer: dict[str, Any], output: str) -> None:
    from supplychain.report import render

    sys.stdout.write(render(answer, output))


def cmd_gate(args: argparse.Namespace) -> int:
    server = args.server or os.environ.get("SUPPLYCHAIN_SERVER", "http://127.0.0.1:8080")
    if not server.startswith(("http://", "https://")):
        answer: Any = {"decision": "error", "error": f"--server must be an http(s) URL: {server}"}
        _print_answer(answer, args.output)
        return EXIT_OTHER
    body: dict[str, Any] = {"image": args.image}
    if args.wait is not None:
        body["wait"] = args.wait
    if args.platform:
        body["platform"] = args.platform
    timeout = (args.wait if args.wait is not None else 600) + 30
    try:
        token = client.read_token(args.token_file)
        answer = client.post_json(f"{server.rstrip('/')}/v1/gate", body, timeout, token)
    except (OSError, ValueError) as exc:
        answer = {"decision": "error", "error": f"gate unreachable or bad answer: {exc}"}
    _print_answer(answer, args.output)
    return EXIT.get(str(answer.get("decision")), EXIT_OTHER)


def cmd_scan(args: argparse.Namespace) -> int:
    from supplychain.cli.scan import scan_image

    settings = _settings()
    _migrate(settings, required=False)
    answer = scan_image(settings, args.image, platform=args.platform)
    _print_answer(answer, args.output)
    return EXIT.get(str(answer.get("decision")), EXIT_OTHER)


def parser(*, extensions: bool | str = True) -> argparse.ArgumentParser:
    """The argument parser.

    ``extensions``: True adds the subcommands of every module of :data:`EXTENSIONS`, False none,
    a command name only those of the module adding it.
    """
    from supplychain import __version__

    main = argparse.ArgumentParser(
        prog="supplychain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--version", action="version", version=f"supplychain {__version__}")
    sub = main.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP API with in-process workers")
    serve.add_argument("--listen", help="host:port (default SUPPLYCHAIN_LISTEN)")
    serve.add_argument(
        "--workers", type=int, help="in-process workers (default SUPPLYCHAIN_WORKERS)"
    )
    serve.add_argument(
        "--processes",
        type=int,
        choices=range(1, 65),
        metavar="N",
        help="HTTP processes, 1-64 (default SUPPLYCHAIN_API_PROCESSES, 1)",
    )
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS: PEM certificate chain")
    serve.add_argument("--tls-key", type=Path, help="serve HTTPS: PEM private key")
    worker = sub.add_parser("worker", help="run workers only (no HTTP API)")
    worker.add_argument("--count", type=int, default=1, help="worker threads (default 1)")
    for command in (serve, worker):
        command.add_argument(
            "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log level"
        )
        command.add_argument("--policy", type=Path, help="policy YAML (default: deny CRITICAL)")
        command.set_defaults(func=cmd_serve if command is serve else cmd_worker)
    db = sub.add_parser("db", help="database administration")
    db.add_argument("action", choices=["upgrade"], help="upgrade: migrate to the latest schema")
    db.set_defaults(func=cmd_db)
    for name, func, text in (
        ("gate", cmd_gate, "ask the service whether IMAGE may be deployed"),
        ("scan", cmd_scan, "run the pipeline on IMAGE in this process, without a server"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("image", help=IMAGE_HELP[name])
        command.add_argument(
            "--output",
            choices=OUTPUTS,
            default="table",
            help="table for people (default), json for machines, sarif, junit or markdown for CI",
        )
        command.add_argument("--platform", help="os/arch of an index to decide on")
        command.set_defaults(func=func)
        if name == "gate":
            command.add_argument(
                "--server", help="service URL (default SUPPLYCHAIN_SERVER or http://127.0.0.1:8080)"
            )
            command.add_argument(
                "--wait", type=float, help="seconds to wait while pending (default: the server's)"
            )
            command.add_argument(
                "--token-file",
                type=Path,
                help="file holding the ci token (default SUPPLYCHAIN_TOKEN)",
            )
    for module, names in EXTENSIONS.items():
        if extensions is True or extensions in names:
            importlib.import_module(module).add_parser(sub)
    for _path, command in commands(main):
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.required = False  # a group alone prints its help (see main)
    return main


IMAGE_HELP = {
    "gate": "host/repo:tag or host/repo@sha256:…",
    "scan": "host/repo:tag, host/repo@sha256:…, oci:DIR[:TAG] or docker-archive:FILE.tar",
}


def commands(
    top: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``top`` with its words (``("vulndb", "update")``), ``top`` first."""
    found = [(path, top)]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += commands(child, (*path, name))
    return found


def _bare_group(top: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The parser of a command group named without its subcommand (``supplychain keys``)."""
    current = top
    while True:
        group = next(
            (a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if group is None:
            return None
        chosen = getattr(args, group.dest, None)
        if chosen is None:
            return current
        current = group.choices[chosen]


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    words = sys.argv[1:] if argv is None else argv
    first = words[0] if words else ""
    named = any(first in names for names in EXTENSIONS.values())
    # `gate` and `sbom` start fast: no imports for the commands not named
    top = parser(extensions=first if named else first not in CORE_COMMANDS)
    args = top.parse_args(words)
    bare = _bare_group(top, args)
    if bare is not None:
        bare.print_help()
        return EXIT_OTHER
    code: int = args.func(args)
    if argv is None:  # the program itself: it ends now, so the interpreter's last collection
        gc.freeze()  # need not walk every object still alive (0.02 s after an SBOM)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
