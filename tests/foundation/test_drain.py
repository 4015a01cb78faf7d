"""SIGTERM under load: a real `chittyauth serve` drains, and cancels nothing it accepted.

64 gRPC clients (each on its own connection) and a few HTTP clients issue tokens (a write: a
token row and its audit record) and validate them while the process gets SIGTERM. Every call
must either succeed, with its write in the database afterwards, or be refused UNAVAILABLE (HTTP:
503 or no connection) having written nothing; none may end CANCELLED, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import Config, replace
from tests.clients.helpers import reason
from tests.conftest import token_minter
from tests.foundation.test_workers import CLIENT_ID, SECRET, fresh_channel, server_env
from tests.support.devauthority import DevAuthority

GRPC_CLIENTS = 64
HTTP_CLIENTS = 8
DRAIN_DELAY_S = 0.5
GRACE_S = 8.0
# Load before the signal: enough for every client to be mid-call when it lands.
CALLS_BEFORE_SIGTERM = 400
_ids = itertools.count(1)


@dataclass
class Running:
    process: asyncio.subprocess.Process
    log_file: Path
    db_path: Path
    grpc_port: int = 0
    http_port: int = 0

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log_file.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def log_tail(self) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Outcomes:
    """What the clients saw, by call kind and status, with what identifies each call's write."""

    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    issued_jtis: list[str] = field(default_factory=list)
    # Request ids of the token calls that succeeded and of those refused.
    succeeded_ids: list[str] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    ok_after_sigterm: int = 0
    total: int = 0


async def _start(tmp_path: Path, authority: DevAuthority, workers: int) -> Running:
    env = {
        **server_env(tmp_path, authority),
        "CHITTYAUTH_GRPC__GRACE_PERIOD_S": str(GRACE_S),
        "CHITTYAUTH_GRPC__DRAIN_DELAY_S": str(DRAIN_DELAY_S),
        "CHITTYAUTH_RATE_LIMITS__ENABLED": "false",
    }
    log_file = tmp_path / "serve.log"
    args = ["serve"] if workers == 1 else ["serve", "--workers", str(workers)]
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chittyauth.cli", *args,
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    running = Running(process, log_file, tmp_path / "chittyauth.db")
    deadline = asyncio.get_running_loop().time() + 40
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"serve exited early:\n{running.log_tail()}")
        lines = running.log_lines()
        serving = [line for line in lines if line["message"] == "serving"]
        http = [line for line in lines if line["message"] == "http serving"]
        if len(serving) == workers and len(http) == workers:
            running.grpc_port = int(serving[0]["grpc"].rsplit(":", 1)[1])
            running.http_port = int(http[0]["http"].rsplit(":", 1)[1])
            return running
        await asyncio.sleep(0.1)
    raise AssertionError(f"serve did not start in time:\n{running.log_tail()}")


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as exits:
        yield exits


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


async def _grpc_client(
    channel: aio.Channel, token: str, outcomes: Outcomes, state: dict[str, Any]
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    for turn in itertools.count():
        if state["stop"]:
            return
        request_id = f"drain-{next(_ids)}"
        metadata = (("x-request-id", request_id),)
        writes = turn % 2 == 0
        kind = "exchange" if writes else "validate"
        signalled = state["sigterm_at"] is not None
        try:
            if writes:
                reply = await stub.Exchange(
                    auth_service_pb2.ExchangeRequest(
                        client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                        client_id=CLIENT_ID,
                        client_secret=SECRET,
                        scopes=["workers:read"],
                    ),
                    metadata=metadata,
                    timeout=GRACE_S + 10,
                )
                outcomes.issued_jtis.append(_jti(reply.access_token))
                outcomes.succeeded_ids.append(request_id)
            else:
                answer = await stub.Validate(
                    auth_service_pb2.ValidateRequest(token=token),
                    metadata=metadata,
                    timeout=GRACE_S + 10,
                )
                assert answer.active
            code = "OK"
            outcomes.ok_after_sigterm += signalled
        except aio.AioRpcError as exc:
            code = exc.code().name
            if writes:
                outcomes.refused_ids.append(request_id)
        outcomes.codes[(kind, code)] += 1
        outcomes.total += 1
        if code != "OK":
            return  # refused: a real client moves to another server


async def _http_client(
    session: aiohttp.ClientSession, url: str, outcomes: Outcomes, state: dict[str, Any]
) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    while not state["stop"]:
        request_id = f"drain-http-{next(_ids)}"
        signalled = state["sigterm_at"] is not None
        try:
            async with session.post(
                url,
                data={"grant_type": "client_credentials", "scope": "workers:read"},
                headers={"Authorization": f"Basic {basic}", "X-Request-Id": request_id},
            ) as answer:
                code = str(answer.status)
                if answer.status == 200:
                    outcomes.issued_jtis.append(_jti((await answer.json())["access_token"]))
                    outcomes.succeeded_ids.append(request_id)
                    outcomes.ok_after_sigterm += signalled
                else:
                    outcomes.refused_ids.append(request_id)
        except aiohttp.ClientConnectorError:
            code = "no connection"
            outcomes.refused_ids.append(request_id)
        except aiohttp.ClientError as exc:  # e.g. a connection closed mid-request: ambiguous
            code = type(exc).__name__
        outcomes.codes[("http token", code)] += 1
        outcomes.total += 1
        if code != "200":
            return


def _database_rows(db_path: Path) -> tuple[set[str], set[str]]:
    """The jtis of every token issued to the test client, and the request ids of their audit."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        jtis = {
            row[0] for row in db.execute("SELECT jti FROM tokens WHERE client_id = ?", (CLIENT_ID,))
        }
        audited = {
            row[0]
            for row in db.execute(
                "SELECT request_id FROM audit_events WHERE action = 'token.issued' AND actor = ?",
                (CLIENT_ID,),
            )
        }
    return jtis, audited


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_cancels_no_accepted_call(
    tmp_path: Path, dev_authority: DevAuthority, stack: contextlib.AsyncExitStack, workers: int
) -> None:
    running = await _start(tmp_path, dev_authority, workers)
    try:
        channels = [
            await stack.enter_async_context(fresh_channel(running.grpc_port))
            for _ in range(GRPC_CLIENTS)
        ]
        first = await auth_service_pb2_grpc.AuthServiceStub(channels[0]).Exchange(
            auth_service_pb2.ExchangeRequest(
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                client_id=CLIENT_ID,
                client_secret=SECRET,
                scopes=["workers:read"],
            ),
            timeout=10,
        )
        session = await stack.enter_async_context(aiohttp.ClientSession())
        url = f"http://127.0.0.1:{running.http_port}/token"
        outcomes = Outcomes()
        outcomes.issued_jtis.append(_jti(first.access_token))
        state: dict[str, Any] = {"stop": False, "sigterm_at": None}
        load = [
            *(_grpc_client(ch, first.access_token, outcomes, state) for ch in channels),
            *(_http_client(session, url, outcomes, state) for _ in range(HTTP_CLIENTS)),
        ]
        tasks = [asyncio.ensure_future(client) for client in load]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while outcomes.total < CALLS_BEFORE_SIGTERM and loop.time() < deadline:
            await asyncio.sleep(0.05)
        state["sigterm_at"] = loop.time()
        running.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(running.process.wait(), GRACE_S + 20)
        state["stop"] = True
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if running.process.returncode is None:
            running.process.kill()
            await running.process.wait()

    print(f"\n{workers} process(es): {outcomes.total} calls, {dict(outcomes.codes)}")
    assert code == 0, running.log_tail()
    allowed = {"OK", "UNAVAILABLE", "200", "503", "no connection"}
    assert {status for _, status in outcomes.codes} <= allowed, outcomes.codes
    assert sum(n for (_, status), n in outcomes.codes.items() if status == "CANCELLED") == 0
    # The drain delay served calls after the signal: clients had time to move away.
    assert outcomes.ok_after_sigterm > 0
    # Every acknowledged write is in the database, and nothing else was written: a refused
    # call never started.
    jtis, audited = _database_rows(running.db_path)
    assert jtis == set(outcomes.issued_jtis)
    assert set(outcomes.succeeded_ids) <= audited
    assert not audited & set(outcomes.refused_ids)
    # The server says how the drain went.
    drained = [line for line in running.log_lines() if line["message"] == "drained"]
    assert len(drained) == workers, running.log_tail()
    assert all(line["cancelled"] == 0 for line in drained)


async def test_the_drain_serves_not_serving_then_refuses_new_calls_unstarted(
    config: Config, dev_authority: DevAuthority
) -> None:
    config = replace(
        config,
        authority=dataclasses.replace(config.authority, url=dev_authority.authority_url),
        rate_limits=dataclasses.replace(config.rate_limits, enabled=False),
    )
    server = Server(config)
    await server.start()
    mint = token_minter(server)
    token = await mint()
    grpc_url = f"http://127.0.0.1:{server.http_port}"
    async with aio.insecure_channel(server.grpc_target) as channel, aiohttp.ClientSession() as http:
        health = health_pb2_grpc.HealthStub(channel)
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        stopping = asyncio.ensure_future(server.stop(delay=30.0))
        await asyncio.sleep(0.2)

        # The delay: health says go away, but calls are still served, and every HTTP
        # response tells its client not to reuse the connection.
        for service in ("", "chitty.auth.v1.AuthService", "chitty.auth.v1.KeyService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await auth.Validate(auth_service_pb2.ValidateRequest(token=token))).active
        async with http.get(f"{grpc_url}/jwks.json") as served:
            assert served.status == 200
            assert served.headers["Connection"] == "close"

        # A second signal ends the delay; from then on a new call is refused before it starts.
        server.hurry()
        await asyncio.sleep(0.05)
        with pytest.raises(aio.AioRpcError) as refused:
            await auth.Validate(auth_service_pb2.ValidateRequest(token=token))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason(refused.value) == "SHUTTING_DOWN"
        async with http.post(
            f"{grpc_url}/token",
            data={"grant_type": "client_credentials"},
            headers={"Connection": "close"},
        ) as refused_http:
            assert refused_http.status == 503
            assert (await refused_http.json())["error"] == "temporarily_unavailable"
        await asyncio.wait_for(stopping, 10)
