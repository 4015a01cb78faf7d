"""Store faults with real files: a full disk and a write lock held by another process.

Each answers with a clear status and reason (never INTERNAL with SQLite's text), turns health
NOT_SERVING (overall and per service) and ``/readyz`` 503, and recovers by itself once the
fault is gone, with no call needed to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chitty.auth.v1 import client_service_pb2 as pb
from chitty.auth.v1 import client_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import Config, replace
from chittyauth.rpc.services import ALL_SERVICES
from tests.clients.helpers import linked_app, reason
from tests.conftest import bearer, running_server, token_minter

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Room for the database and its WAL after start-up, and little more.
DISK_BYTES = 4 * 1024 * 1024
BUSY_TIMEOUT_MS = 400
PROBE_INTERVAL_S = 0.1


@contextlib.contextmanager
def tiny_filesystem(where: Path) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``where`` (as root), or a loop-mounted ext4 image."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited filesystem needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        image = where.parent / "disk.img"
        with image.open("wb") as file:
            file.truncate(DISK_BYTES * 2)
        made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, check=False)
        looped = subprocess.run(
            ["mount", "-o", "loop", str(image), str(where)], capture_output=True, check=False
        )
        if made.returncode != 0 or looped.returncode != 0:
            pytest.skip(
                "cannot mount a small filesystem here: tmpfs said"
                f" {mounted.stderr.decode().strip()!r}, a loop image"
                f" {looped.stderr.decode().strip()!r}"
            )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Writes a file in ``directory`` until the filesystem refuses another byte."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        while True:  # the last partial chunk, in small writes
            try:
                file.write(b"\0" * 512)
            except OSError:
                break
    return filler


def store_config(config: Config, path: Path) -> Config:
    return replace(
        config,
        store=dataclasses.replace(
            config.store,
            path=str(path),
            busy_timeout_ms=BUSY_TIMEOUT_MS,
            probe_interval_s=PROBE_INTERVAL_S,
        ),
    )


async def health(channel: aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


async def every_health(channel: aio.Channel) -> set[int]:
    names = ["", *(spec.full_name for spec in ALL_SERVICES)]
    return {await health(channel, name) for name in names}


async def wait_for(channel: aio.Channel, status: int, timeout_s: float = 10.0) -> None:
    """Until the overall and every service's status is ``status``, with no calls but Check."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await every_health(channel) != {status}:
        assert loop.time() < deadline, f"health never became {status} everywhere"
        await asyncio.sleep(0.05)


async def readyz(server: Server) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/readyz") as answer,
    ):
        return answer.status, await answer.json()


async def healthz(server: Server) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/healthz") as answer,
    ):
        return answer.status


@contextlib.asynccontextmanager
async def served(config: Config) -> AsyncIterator[tuple[Server, aio.Channel, str]]:
    async with running_server(config) as server:
        admin = await token_minter(server)()
        async with aio.insecure_channel(server.grpc_target) as channel:
            yield server, channel, admin


async def create_client(channel: aio.Channel, admin: str) -> pb.CreateClientResponse:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    return await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app()), metadata=bearer(admin), timeout=10
    )


async def test_a_full_disk_is_resource_exhausted_then_recovers_by_itself(
    config: Config, tmp_path: Path
) -> None:
    with tiny_filesystem(tmp_path / "disk") as disk:
        async with served(store_config(config, disk / "chittyauth.db")) as (server, channel, admin):
            await create_client(channel, admin)
            filler = fill(disk)

            with pytest.raises(aio.AioRpcError) as caught:
                await create_client(channel, admin)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason(caught.value) == "STORE_FULL"
            assert "full" in (caught.value.details() or "")
            assert "sqlite" not in (caught.value.details() or "").lower()
            await wait_for(channel, NOT_SERVING)
            status, body = await readyz(server)
            assert status == 503
            assert body["status"] == "NOT_READY"
            assert body["checks"] == {"store": "not writable", "authority": "ok", "keys": "ok"}
            assert await healthz(server) == 200  # alive: a restart would not free the disk
            # Still full: the probe keeps failing, health stays down.
            await asyncio.sleep(5 * PROBE_INTERVAL_S)
            assert await every_health(channel) == {NOT_SERVING}

            filler.unlink()  # free space; no call is made until health says so
            await wait_for(channel, SERVING)
            assert (await readyz(server))[0] == 200
            created = await create_client(channel, admin)
            assert created.client.client_id


async def test_full_disk_leaves_the_audit_chain_intact(config: Config, tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "disk") as disk:
        path = disk / "chittyauth.db"
        async with served(store_config(config, path)) as (server, channel, admin):
            filler = fill(disk)
            for _ in range(3):
                with pytest.raises(aio.AioRpcError) as caught:
                    await create_client(channel, admin)
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            filler.unlink()
            await wait_for(channel, SERVING)
            await create_client(channel, admin)
            assert (await server.store.verify_audit_log()).valid


@contextlib.asynccontextmanager
async def write_lock_held(path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holding the database's write lock (``BEGIN EXCLUSIVE``) until the block
    ends."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
        yield holder
    finally:
        holder.stdin.close()
        try:
            await asyncio.wait_for(holder.wait(), 10)
        except TimeoutError:
            holder.kill()
            await holder.wait()


async def test_a_write_lock_held_by_another_process_is_unavailable_then_recovers(
    config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "chittyauth.db"
    async with served(store_config(config, path)) as (server, channel, admin):
        async with write_lock_held(path):
            started = asyncio.get_running_loop().time()
            with pytest.raises(aio.AioRpcError) as caught:
                await create_client(channel, admin)
            waited = asyncio.get_running_loop().time() - started
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert reason(caught.value) == "STORE_BUSY"
            assert "locked" not in (caught.value.details() or "")  # not SQLite's own text
            assert waited < BUSY_TIMEOUT_MS / 1000 + 5
            await wait_for(channel, NOT_SERVING)
            status, body = await readyz(server)
            assert status == 503
            assert body["checks"]["store"] == "not writable"  # type: ignore[index]
            assert await healthz(server) == 200
        await wait_for(channel, SERVING)
        assert (await readyz(server))[0] == 200
        assert (await create_client(channel, admin)).client.client_id
