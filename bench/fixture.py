"""The system under test: a ``chittyauth serve`` process on a temp config and database, the
baseline processes, and the credentials the scenarios need (admin, service client, tokens)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
ADMIN_CLIENT = "bench-admin"
# A ChittyID in the official format (the one the OAuth tests use).
USER = "AB-C-PEO-1234-P-56-H-7"
REDIRECT = "https://app.example/callback"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def frame(message: bytes) -> bytes:
    """gRPC length-prefixed framing: flag 0, 4-byte big-endian length, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Proc:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str], workdir: Path, env: dict[str, str]) -> Proc:
        log = workdir / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            list(argv), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        return cls(name, popen, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_line(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {text!r}: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHITTYAUTH_")}
    paths = [str(ROOT), str(ROOT / "server"), str(ROOT / "clients")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return env


def start_baseline(kind: str, workdir: Path) -> tuple[Proc, int]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.baselines", kind, "--port", str(port)]
    proc = Proc.start(f"baseline-{kind}", argv, workdir, child_env())
    proc.wait_for_line("ready")
    return proc, port


@dataclass
class ChittyAuth:
    """A running ``chittyauth serve`` and what the scenarios need from it."""

    proc: Proc
    config_path: Path
    db_path: Path
    grpc_port: int
    http_port: int
    admin_secret: str
    admin_token: str = ""
    service_client: str = ""
    service_secret: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def write_config(workdir: Path, db_path: Path, grpc_port: int, http_port: int) -> Path:
    clients = workdir / "clients.toml"
    clients.write_text(
        f"""[[clients]]
client_id = "{ADMIN_CLIENT}"
display_name = "Benchmark administrator"
kind = "service"
allowed_scopes = ["chittyauth:admin"]
grant_types = ["client_credentials"]
secret_env = "BENCH_ADMIN_SECRET"
""",
        encoding="utf-8",
    )
    config = workdir / "chittyauth.toml"
    # Rate limits are off: the scenarios measure the service, not the limiter's refusals.
    config.write_text(
        f"""log_level = "WARNING"
clients_file = "{clients}"

[grpc]
port = {grpc_port}

[http]
port = {http_port}

[store]
path = "{db_path}"

[rate_limits]
enabled = false
""",
        encoding="utf-8",
    )
    return config


def start_chittyauth(workdir: Path, db_path: Path | None = None) -> ChittyAuth:
    grpc_port, http_port = free_port(), free_port()
    db_path = db_path or workdir / "chittyauth.db"
    config = write_config(workdir, db_path, grpc_port, http_port)
    env = child_env()
    admin_secret = secrets.token_urlsafe(40)
    env["BENCH_ADMIN_SECRET"] = admin_secret
    argv = [sys.executable, "-m", "chittyauth.cli", "--config", str(config), "serve"]
    proc = Proc.start("chittyauth", argv, workdir, env)
    server = ChittyAuth(proc, config, db_path, grpc_port, http_port, admin_secret)
    asyncio.run(wait_serving(server))
    return server


def restart(server: ChittyAuth, workers: int = 1) -> None:
    """Stops the server and starts it again on the same config, database and ports, as
    ``serve --workers N`` when ``workers`` > 1."""
    server.proc.stop()
    env = child_env()
    env["BENCH_ADMIN_SECRET"] = server.admin_secret
    argv = [sys.executable, "-m", "chittyauth.cli", "--config", str(server.config_path), "serve"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    server.proc = Proc.start("chittyauth-2", argv, server.config_path.parent, env)
    asyncio.run(wait_serving(server))
    # The first worker up answers health; a connection made before the others listen would
    # stay on it for a whole run (HTTP/2 connections are long-lived).
    deadline = time.monotonic() + 60
    while listening_sockets(server.grpc_port) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers} workers did not all listen on {server.grpc_port}")
        time.sleep(0.05)


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (each ``serve --workers`` process has its own)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


async def wait_serving(server: ChittyAuth, timeout: float = 60.0) -> float:
    """Polls grpc.health.v1 until the server answers SERVING; returns the seconds waited."""
    began = time.monotonic()
    # Reconnect quickly: with grpc's default backoff (1 s and up) a first attempt before the
    # port is open would add a second or more to the start-up being measured.
    fast = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 50),
    ]
    async with aio.insecure_channel(server.target, options=fast) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - began < timeout:
            if server.proc.popen.poll() is not None:
                break
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - began
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError(f"chittyauth did not become SERVING: {server.proc.tail()}")


async def provision(server: ChittyAuth) -> None:
    """Admin token (clients-file admin, client_credentials), then a service client and a
    linked app created through ClientService with it."""
    async with aio.insecure_channel(server.target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        reply = await auth.Exchange(
            auth_service_pb2.ExchangeRequest(
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                client_id=ADMIN_CLIENT,
                client_secret=server.admin_secret,
            )
        )
        server.admin_token = reply.access_token
        meta = (("authorization", f"Bearer {server.admin_token}"),)
        clients = client_service_pb2_grpc.ClientServiceStub(channel)
        created = await clients.CreateClient(
            client_service_pb2.CreateClientRequest(
                client=client_pb2.Client(
                    display_name="Benchmark service",
                    kind=client_pb2.CLIENT_KIND_SERVICE,
                    confidential=True,
                    allowed_scopes=["mcp:read", "chittyos:services"],
                    grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
                )
            ),
            metadata=meta,
        )
        server.service_client = created.client.client_id
        server.service_secret = created.client_secret
        app = await clients.CreateClient(
            client_service_pb2.CreateClientRequest(
                client=client_pb2.Client(
                    display_name="Benchmark linked app",
                    kind=client_pb2.CLIENT_KIND_LINKED_APP,
                    confidential=True,
                    redirect_uris=[REDIRECT],
                    allowed_scopes=["mcp:read", "mcp:write", "cross_sync"],
                    grant_types=[
                        client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
                        client_pb2.GRANT_TYPE_REFRESH_TOKEN,
                    ],
                    token_endpoint_auth_method=(
                        client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC
                    ),
                )
            ),
            metadata=meta,
        )
        server.extras["app_client"] = app.client.client_id
        server.extras["app_secret"] = app.client_secret


def exchange_cc_request(server: ChittyAuth) -> auth_service_pb2.ExchangeRequest:
    return auth_service_pb2.ExchangeRequest(
        client_credentials=auth_service_pb2.ClientCredentialsGrant(),
        client_id=server.service_client,
        client_secret=server.service_secret,
    )


async def exchange_once(server: ChittyAuth) -> str:
    async with aio.insecure_channel(server.target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        reply = await auth.Exchange(exchange_cc_request(server))
        return reply.access_token


async def validate_once(target: str, token: str) -> auth_service_pb2.ValidateResponse:
    async with aio.insecure_channel(target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        return await auth.Validate(auth_service_pb2.ValidateRequest(token=token))


async def mint_tokens(config_path: Path, specs: Sequence[dict[str, Any]]) -> list[str]:
    """Signs tokens with the server's own key ring, opened from the same database in this
    process (the server keeps running; Validate needs no row per access token)."""
    from chittyauth.clock import SystemClock
    from chittyauth.config import load_config
    from chittyauth.domain.keys import KeyRing
    from chittyauth.domain.tokens import TokenService
    from chittyauth.store.sqlite import SqliteStore

    config = load_config(config_path, env={})
    clock = SystemClock()
    store = SqliteStore(config.store.path, clock, busy_timeout_ms=config.store.busy_timeout_ms)
    await store.open()
    try:
        keys = KeyRing(store, clock, config)
        await keys.load()
        tokens = TokenService(config.tokens, keys, clock)
        out: list[str] = []
        # One transaction per thousand: issue() only reads tx.now, so this writes nothing.
        for start in range(0, len(specs), 1000):
            async with store.transaction() as tx:
                for spec in specs[start : start + 1000]:
                    out.append((await tokens.issue(tx, **spec)).token)
        return out
    finally:
        await store.close()
