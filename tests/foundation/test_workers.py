"""`chittyauth serve --workers N`: N real processes on one port, kept consistent by the log.

Which worker holds a socket is read from /proc: every worker owns a listening socket on each
port, and each accepted connection belongs to the worker the kernel handed it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from tests.conftest import bearer
from tests.support.devauthority import DevAuthority

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
CLIENT_ID = "workers-svc"
SECRET = "workers-test-secret-0123456789abcdef-0123"
SERVING = health_pb2.HealthCheckResponse.SERVING
# The change feed polls every 0.5 s; the rest is slack for a busy machine.
REVOCATION_DEADLINE_S = 3.0
_LISTEN, _ESTABLISHED = "0A", "01"


@dataclass
class Supervised:
    """A running `serve --workers 2` and what its log says about it."""

    process: asyncio.subprocess.Process
    log_file: Path
    grpc_port: int = 0
    http_port: int = 0
    # Worker pids by index, from the workers' own "serving" log lines.
    worker_pids: tuple[int, ...] = ()

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log_file.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def log_tail(self) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])


def server_env(tmp_path: Path, authority: DevAuthority) -> dict[str, str]:
    clients_file = tmp_path / "clients.toml"
    clients_file.write_text(
        f'[[clients]]\nclient_id = "{CLIENT_ID}"\ndisplay_name = "Workers"\nkind = "service"\n'
        'allowed_scopes = ["workers:read"]\ngrant_types = ["client_credentials"]\n'
        'secret_env = "WORKERS_TEST_CLIENT_SECRET"\n'
    )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CHITTYAUTH_")}
    return {
        **inherited,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "WORKERS_TEST_CLIENT_SECRET": SECRET,
        "CHITTYAUTH_STORE__PATH": str(tmp_path / "chittyauth.db"),
        "CHITTYAUTH_CLIENTS_FILE": str(clients_file),
        "CHITTYAUTH_GRPC__PORT": "0",
        "CHITTYAUTH_HTTP__PORT": "0",
        "CHITTYAUTH_GRPC__GRACE_PERIOD_S": "2",
        "CHITTYAUTH_GRPC__DRAIN_DELAY_S": "0.2",
        "CHITTYAUTH_AUTHORITY__URL": authority.authority_url,
        "CHITTYAUTH_PORTAL__TEAM_DOMAIN": authority.base_url,
    }


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chittyauth.cli", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


@pytest.fixture
async def supervised(tmp_path: Path, dev_authority: DevAuthority) -> AsyncIterator[Supervised]:
    log_file = tmp_path / "serve.log"
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chittyauth.cli", "serve", "--workers", str(WORKERS),
            cwd=tmp_path, env=server_env(tmp_path, dev_authority),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    running = Supervised(process, log_file)
    try:
        await _wait_until_serving(running)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        for pid in running.worker_pids:  # never leave a worker behind, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _wait_until_serving(running: Supervised) -> None:
    """Waits for the supervisor's ports and a "serving" line from every worker."""
    deadline = asyncio.get_running_loop().time() + 40
    while asyncio.get_running_loop().time() < deadline:
        if running.process.returncode is not None:
            raise AssertionError(f"serve --workers exited early:\n{running.log_tail()}")
        lines = running.log_lines()
        started = [line for line in lines if line["message"] == "workers started"]
        serving = {line["worker"]: line["pid"] for line in lines if line["message"] == "serving"}
        if started and len(serving) == WORKERS:
            running.grpc_port = int(started[0]["grpc"].rsplit(":", 1)[1])
            running.http_port = int(started[0]["http"].rsplit(":", 1)[1])
            running.worker_pids = tuple(serving[index] for index in range(WORKERS))
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the workers did not start in time:\n{running.log_tail()}")


# -- /proc ------------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            state, parent = stat
            if parent == pid and state != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[1])


def owners(port: int, state: str, pids: tuple[int, ...]) -> list[int]:
    """The pid owning each server-side socket on ``port`` in ``state``, one entry a socket."""
    inodes: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.append(fields[9])
    by_inode: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        by_inode[link[8:-1]] = pid
    return [by_inode[inode] for inode in inodes if inode in by_inode]


# -- gRPC over separate connections -----------------------------------------------------------


def fresh_channel(port: int) -> aio.Channel:
    """A channel with its own TCP connection (no subchannel shared with other channels)."""
    return aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def channels_on_every_worker(
    stack: contextlib.AsyncExitStack, running: Supervised, minimum: int
) -> list[aio.Channel]:
    """At least ``minimum`` connected channels, until every worker has accepted one of them.

    Each channel's first call is a health check that must answer SERVING.
    """
    channels: list[aio.Channel] = []
    while len(channels) < 48:
        channel = await stack.enter_async_context(fresh_channel(running.grpc_port))
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == SERVING
        channels.append(channel)
        accepted = owners(running.grpc_port, _ESTABLISHED, running.worker_pids)
        if len(channels) >= minimum and set(accepted) == set(running.worker_pids):
            return channels
    raise AssertionError(f"48 connections never reached every worker: {accepted}")


async def validate(channel: aio.Channel, token: str) -> auth_service_pb2.ValidateResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Validate(auth_service_pb2.ValidateRequest(token=token), timeout=10)


# -- the tests --------------------------------------------------------------------------------


async def test_two_workers_share_both_ports_and_each_serves(supervised: Supervised) -> None:
    # Exactly the two workers are children of the supervisor, and they are the ones logging.
    assert children(supervised.process.pid) == set(supervised.worker_pids)
    assert len(set(supervised.worker_pids)) == WORKERS
    for port in (supervised.grpc_port, supervised.http_port):
        listening = owners(port, _LISTEN, supervised.worker_pids)
        assert sorted(listening) == sorted(supervised.worker_pids)

    async with contextlib.AsyncExitStack() as stack:
        channels = await channels_on_every_worker(stack, supervised, minimum=6)
        for channel in channels:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="chitty.auth.v1.AuthService"), timeout=10
            )
            assert reply.status == SERVING

    url = f"http://127.0.0.1:{supervised.http_port}/readyz"
    for _ in range(4):
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as answer:
            assert answer.status == 200
            assert (await answer.json())["status"] == "READY"


async def test_a_revocation_on_one_worker_reaches_every_connection(
    supervised: Supervised,
) -> None:
    async with fresh_channel(supervised.grpc_port) as channel:
        issued = await auth_service_pb2_grpc.AuthServiceStub(channel).Exchange(
            auth_service_pb2.ExchangeRequest(
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                client_id=CLIENT_ID,
                client_secret=SECRET,
                scopes=["workers:read"],
            ),
            timeout=10,
        )
    token = issued.access_token

    async with contextlib.AsyncExitStack() as stack:
        channels = await channels_on_every_worker(stack, supervised, minimum=8)
        for channel in channels:
            answer = await validate(channel, token)
            assert answer.active
            assert answer.claims.sub == CLIENT_ID

        async with fresh_channel(supervised.grpc_port) as channel:
            await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
                auth_service_pb2.RevokeRequest(token=token), metadata=bearer(token), timeout=10
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOCATION_DEADLINE_S
        answers = [await validate(channel, token) for channel in channels]
        while any(answer.active for answer in answers) and loop.time() < deadline:
            await asyncio.sleep(0.1)
            answers = [await validate(channel, token) for channel in channels]
        assert [a.inactive_reason for a in answers] == [token_pb2.INACTIVE_REASON_REVOKED] * len(
            channels
        )

    # Connections made after the revocation, again on every worker, agree.
    async with contextlib.AsyncExitStack() as stack:
        for channel in await channels_on_every_worker(stack, supervised, minimum=4):
            answer = await validate(channel, token)
            assert not answer.active
            assert answer.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED


async def test_sigterm_stops_every_worker_and_exits_0(supervised: Supervised) -> None:
    supervised.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(supervised.process.wait(), 20)
    assert code == 0, supervised.log_tail()
    assert not any(alive(pid) for pid in supervised.worker_pids)
    stopped = [line for line in supervised.log_lines() if line["message"] == "workers stopped"]
    assert stopped[-1]["exit_codes"] == [0] * WORKERS
    assert {
        line["worker"] for line in supervised.log_lines() if line["message"] == "stopped"
    } == set(range(WORKERS))


async def test_a_crashed_worker_stops_the_service_non_zero(supervised: Supervised) -> None:
    os.kill(supervised.worker_pids[1], signal.SIGKILL)
    code = await asyncio.wait_for(supervised.process.wait(), 20)
    assert code != 0
    assert not any(alive(pid) for pid in supervised.worker_pids)
    died = [line for line in supervised.log_lines() if line["message"].startswith("worker exited")]
    assert len(died) == 1
    assert died[0]["worker"] == 1
    assert died[0]["worker_pid"] == supervised.worker_pids[1]
    assert died[0]["exit_code"] == -signal.SIGKILL


async def test_workers_end_when_the_supervisor_is_killed(supervised: Supervised) -> None:
    supervised.process.kill()
    await supervised.process.wait()
    deadline = asyncio.get_running_loop().time() + 15
    while any(alive(pid) for pid in supervised.worker_pids):
        assert asyncio.get_running_loop().time() < deadline, "a worker outlived its supervisor"
        await asyncio.sleep(0.1)
    stopped = {line["worker"] for line in supervised.log_lines() if line["message"] == "stopped"}
    assert stopped == set(range(WORKERS))  # each drained and stopped on its SIGTERM


@pytest.mark.parametrize("count", ["0", "65", "-1"])
async def test_a_worker_count_out_of_range_exits_2(count: str) -> None:
    code, err = await run_cli("serve", "--workers", count)
    assert code == 2
    assert f"--workers must be between 1 and 64, not {count}" in err


async def test_a_port_already_listened_on_is_refused(tmp_path: Path) -> None:
    # Not even another server's workers may be joined by accident.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHITTYAUTH_")}
        env["CHITTYAUTH_STORE__PATH"] = str(tmp_path / "chittyauth.db")
        env["CHITTYAUTH_GRPC__PORT"] = str(port)
        code, err = await run_cli("serve", "--workers", "2", env=env)
    assert code == 1
    assert f"cannot bind 127.0.0.1:{port}" in err
    assert not (tmp_path / "chittyauth.db").exists()  # nothing was written before the check
