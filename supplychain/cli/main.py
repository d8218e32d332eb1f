"""supplychain: secure container images from registry to deploy.

Exit codes: 0 allow (or done), 1 deny, 2 anything else (pending, timeout, error): fail closed.
Settings come from SUPPLYCHAIN_* environment variables (see the README).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supplychain.config import Settings

EXIT = {"allow": 0, "deny": 1}
"""Exit codes: allow 0, deny 1, anything else (pending, timeout, error) 2."""
EXIT_OTHER = 2
CORE_COMMANDS = frozenset({"serve", "worker", "db", "gate", "scan"})
EXTENSIONS = (
    "supplychain.cli.sbom",
    "supplychain.cli.signing",
    "supplychain.cli.vulndb",
    "supplychain.cli.tokens",
    "supplychain.cli.policy",
)
"""Modules adding subcommands with ``add_parser(subparsers)``."""
MAX_ANSWER = 4 * 1024 * 1024
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
    from supplychain.api.processes import serve_environment
    from supplychain.service import build_service

    settings = _settings()
    logs.configure(args.log_level)
    _migrate(settings, required=False)
    service = build_service(settings, policy_file=args.policy)
    _warn_without_db(service)
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
    options: dict[str, Any] = {
        "host": host.strip("[]"),
        "port": int(port),
        "log_config": None,
        "access_log": False,
        "ssl_certfile": cert,
        "ssl_keyfile": key,
    }
    if args.processes < 1 or args.processes > 64:
        print("supplychain: --processes: from 1 to 64", file=sys.stderr)
        return EXIT_OTHER
    if args.processes > 1:
        if settings.is_sqlite:
            print(
                "supplychain: --processes needs PostgreSQL (SQLite has one writer)", file=sys.stderr
            )
            return EXIT_OTHER
        service.db.dispose()
        os.environ.update(serve_environment(workers, args.policy, args.log_level))
        # each process builds its own service from the environment (uvicorn's factory mode)
        uvicorn.run(
            "supplychain.api.processes:app_from_environment",
            factory=True,
            workers=args.processes,
            **options,
        )
        return 0
    app = create_app(service, workers=workers)
    # uvicorn turns SIGTERM into a graceful exit; the app's lifespan then shuts the workers down.
    uvicorn.run(app, **options)
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


def _post_json(
    url: str, body: dict[str, Any], timeout: float, token: str | None = None
) -> dict[str, Any]:
    """POST JSON; the answer as a dict, and any non-2xx answer as ``decision: error``.

    Standard library only: `supplychain gate` runs on every deploy, and importing requests alone
    costs about as much as the gate's answer.
    """
    import urllib.error  # only `gate` and `admit` talk HTTP: other commands start faster
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")  # noqa: S310 - caller checks http(s)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, data = response.status, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read(MAX_ANSWER)
    return _answer(status, data)


def _answer(status: int, data: bytes) -> dict[str, Any]:
    """The server's answer; fails closed: a non-2xx answer is an error whatever its body says."""
    try:
        answer = json.loads(data)
    except ValueError:  # not JSON (a proxy's error page…), or not UTF-8
        answer = None
    if 200 <= status < 300:
        if isinstance(answer, dict):
            return answer
        return {"decision": "error", "error": "gate answered something that is not a JSON object"}
    reason = answer.get("error") or answer.get("detail") if isinstance(answer, dict) else None
    if not reason:
        text = data[:200].decode("utf-8", "replace")
        reason = "".join(c if c.isprintable() else " " for c in text).strip() or "no reason given"
    return {"decision": "error", "error": f"gate answered HTTP {status}: {reason}"}


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
        token = _token(args.token_file)
        answer = _post_json(f"{server.rstrip('/')}/v1/gate", body, timeout, token)
    except (OSError, ValueError) as exc:
        answer = {"decision": "error", "error": f"gate unreachable or bad answer: {exc}"}
    _print_answer(answer, args.output)
    return EXIT.get(str(answer.get("decision")), EXIT_OTHER)


def _token(token_file: Path | None) -> str | None:
    """The API token: ``--token-file``'s first line, else ``SUPPLYCHAIN_TOKEN``."""
    if token_file is None:
        return os.environ.get("SUPPLYCHAIN_TOKEN", "").strip() or None
    try:
        return token_file.read_text(encoding="utf-8").strip().splitlines()[0].strip() or None
    except (OSError, UnicodeDecodeError, IndexError):
        raise ValueError(f"--token-file {token_file}: unreadable or empty") from None


def cmd_scan(args: argparse.Namespace) -> int:
    from supplychain.cli.scan import scan_image

    settings = _settings()
    _migrate(settings, required=False)
    answer = scan_image(settings, args.image, platform=args.platform)
    _print_answer(answer, args.output)
    return EXIT.get(str(answer.get("decision")), EXIT_OTHER)


def parser(*, extensions: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``extensions`` adds the subcommands of :data:`EXTENSIONS`."""
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
        default=1,
        help="HTTP processes sharing the port, each with its own workers (PostgreSQL; default 1)",
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
    if extensions:
        for module in EXTENSIONS:
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
    core = bool(words) and words[0] in CORE_COMMANDS  # keep `gate` fast: no extension imports
    top = parser(extensions=not core)
    args = top.parse_args(words)
    bare = _bare_group(top, args)
    if bare is not None:
        bare.print_help()
        return EXIT_OTHER
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
