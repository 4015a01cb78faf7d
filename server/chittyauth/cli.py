"""The ``chittyauth`` command: serve, migrate, version, dev, dev-authority, mcp."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chittyauth import __version__
from chittyauth.config import Config, ConfigError, load_config, replace

log = logging.getLogger("chittyauth")

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chittyauth", description="ChittyAuth identity service")
    parser.add_argument(
        "--config",
        default=os.environ.get("CHITTYAUTH_CONFIG"),
        help="TOML config file (default: $CHITTYAUTH_CONFIG, else built-in defaults)",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server and the HTTP shim")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the gRPC and HTTP ports (1-64, default 1)",
    )
    # Set by the supervisor of --workers N on each worker it starts.
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    commands.add_parser("migrate", help="apply pending database migrations")
    commands.add_parser("version", help="print the version")
    commands.add_parser("policy", help="print the authorization policy table (Markdown)")
    dev = commands.add_parser(
        "dev", help="run the dev identity authority and the server on local defaults"
    )
    dev.add_argument("--authority-port", type=int, default=8090)
    clients = commands.add_parser("clients", help="create an OAuth client in the database")
    clients.add_argument("action", choices=["create"])
    clients.add_argument("--name", required=True, help="display name")
    clients.add_argument("--client-id", default="", help="client id (default: generated)")
    clients.add_argument(
        "--kind", default="service", choices=["service", "linked_app", "mcp_server"]
    )
    clients.add_argument("--scope", action="append", default=[], help="allowed scope")
    clients.add_argument(
        "--admin", action="store_true", help="an admin client (scope chittyauth:admin)"
    )
    keys = commands.add_parser("keys", help="list or rotate signing keys")
    keys.add_argument("action", choices=["list", "rotate"])
    keys.add_argument("--algorithm", choices=["ES256", "EdDSA", "RS256", "HS256"])
    audit = commands.add_parser("audit", help="verify or export the audit log")
    audit.add_argument("action", choices=["verify", "export"])
    mcp = commands.add_parser("mcp", help="run the MCP agent (stdio, or --http)")
    mcp.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="HTTP listen address")
    mcp.add_argument("--port", type=int, default=8765, help="HTTP port (path /mcp)")
    commands.add_parser(
        "dev-authority",
        help="run the development ChittyID authority and Access issuer",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # dev-authority parses its own arguments.
    if "dev-authority" in args_list:
        index = args_list.index("dev-authority")
        from chittyauth import devauthority

        return int(devauthority.main(args_list[index + 1 :]))
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "policy":
        from chittyauth.domain.policy import markdown_table

        sys.stdout.write(markdown_table())
        return 0
    if args.command == "mcp":
        # The agent is a client of the service: it reads CHITTYAUTH_MCP_*, not the config.
        return _mcp(args)
    if args.command == "serve" and (problem := _check_workers(args)):
        print(f"chittyauth: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chittyauth: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from chittyauth.logs import configure_logging

    configure_logging(args.log_level or config.log_level)
    if args.command == "serve":
        return _serve_command(args, config)
    if args.command == "migrate":
        return _run(_migrate(config))
    if args.command == "dev":
        return _dev(args, config)
    if args.command == "clients":
        from chittyauth.clients_cli import clients_create

        return _run(
            clients_create(
                config,
                client_id=args.client_id,
                name=args.name,
                kind=args.kind,
                scopes=tuple(args.scope),
                admin=args.admin,
            )
        )
    if args.command == "keys":
        from chittyauth import keys_cli

        if args.action == "list":
            return _run(keys_cli.keys_list(config))
        return _run(keys_cli.keys_rotate(config, args.algorithm))
    if args.command == "audit":
        from chittyauth import audit_cli

        action = audit_cli.audit_verify if args.action == "verify" else audit_cli.audit_export
        return _run(action(config))
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return EXIT_USAGE  # pragma: no cover


def _run(coro: object) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional extra
        return int(asyncio.run(coro))  # type: ignore[arg-type]
    return int(uvloop.run(coro))  # type: ignore[arg-type]


def _check_workers(args: argparse.Namespace) -> str:
    from chittyauth.workers import check_worker_count

    problem = check_worker_count(args.workers)
    if not problem and args.worker_index is not None and not 0 <= args.worker_index < args.workers:
        problem = f"--worker-index must be below --workers ({args.workers})"
    return problem


def _serve_command(args: argparse.Namespace, config: Config) -> int:
    """One server process, or with --workers N > 1 a supervisor of N (see workers.py)."""
    if args.worker_index is not None:
        from chittyauth.workers import end_with_parent, tag_log_lines

        end_with_parent()
        tag_log_lines(args.worker_index)
        return _run(_serve(config, worker=args.worker_index))
    if args.workers == 1:
        return _run(_serve(config))
    from chittyauth.workers import supervise

    # The workers get the same global options; the rest of the config they read as we did.
    options = ["--config", args.config] if args.config else []
    if args.log_level:
        options += ["--log-level", args.log_level]
    return _run(supervise(config, args.workers, options))


async def _serve(config: Config, *, worker: int | None = None) -> int:
    from chittyauth.app import serve

    return await serve(config, worker=worker)


async def _migrate(config: Config) -> int:
    from chittyauth.clock import SystemClock
    from chittyauth.domain.errors import DomainError
    from chittyauth.store.sqlite import SqliteStore

    store = SqliteStore(
        config.store.path, SystemClock(), busy_timeout_ms=config.store.busy_timeout_ms
    )
    try:
        await store.open()
        version = await store.schema_version()
    except DomainError as exc:
        print(f"chittyauth: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"schema version {version}")
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from chittyauth.mcp.service import AgentConfigError, AgentSettings

    # stdout carries the MCP protocol in stdio mode: logs go to stderr only.
    logging.basicConfig(level=args.log_level or "WARNING", stream=sys.stderr)
    try:
        # Over HTTP the agent acts as each caller and reads no credentials of its own.
        settings = (
            AgentSettings.http_from_env(args.host, args.port)
            if args.http
            else AgentSettings.from_env()
        )
    except AgentConfigError as exc:
        print(f"chittyauth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from chittyauth.mcp import agent

    if args.http:
        return _run(agent.run_http(settings, args.host, args.port))
    return _run(agent.run_stdio(settings))


DEV_CLIENTS_FILE = Path("config/dev-clients.toml")


def _dev(args: argparse.Namespace, config: Config) -> int:
    """Starts the dev authority as a child process, then serves until interrupted.

    Unless a clients file is configured, the development one registers the platform's MCP
    servers and a local admin client (its secret is written beside the database).
    """
    if not config.clients_file and DEV_CLIENTS_FILE.exists():
        config = replace(config, clients_file=str(DEV_CLIENTS_FILE))
    port_file = Path(tempfile.mkdtemp(prefix="chittyauth-dev-")) / "port"
    authority = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "chittyauth.devauthority",
            "--port",
            str(args.authority_port),
            "--port-file",
            str(port_file),
            "--data-file",
            str(Path(config.store.path).parent / "dev-authority.json"),
        ]
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if authority.poll() is not None or time.monotonic() > deadline:
                print("chittyauth: the dev authority did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        return _run(_serve(config))
    finally:
        with contextlib.suppress(ProcessLookupError):
            authority.send_signal(signal.SIGTERM)
        try:
            authority.wait(timeout=5)
        except subprocess.TimeoutExpired:
            authority.kill()


if __name__ == "__main__":
    sys.exit(main())
