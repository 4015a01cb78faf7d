"""A grpc.aio load generator, run as its own process: ``python -m bench.pyload JOB.json``.

Used where h2load cannot do the job: cycling over many request bodies (the spread Validate
scenario), multi-call flows (authorization code, sync + state) and server streams (watch
fan-out); also the fallback when h2load cannot be installed. Prints one JSON object.

A job is a JSON file: ``{"mode": ..., "target": "127.0.0.1:PORT", "concurrency": 64,
"duration_s": 4, "warmup_s": 1, ...}`` plus the mode's own keys (see each ``_mode_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from bench.baselines import run_loop
from chitty.auth.v1 import auth_service_pb2, sync_service_pb2

Call = Callable[[int, int], Awaitable[None]]


def read_frames(path: str) -> list[bytes]:
    """Splits a file of gRPC length-prefixed messages into the serialized messages."""
    data = Path(path).read_bytes()
    out: list[bytes] = []
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at + 1 : at + 5], "big")
        out.append(data[at + 5 : at + 5 + size])
        at += 5 + size
    return out


def _identity(data: bytes) -> bytes:
    return data


async def _drive(job: dict[str, Any], call: Call) -> dict[str, Any]:
    """Runs ``concurrency`` workers calling ``call`` for warm-up + duration; times the rest."""
    concurrency = int(job.get("concurrency", 64))
    warmup = float(job.get("warmup_s", 1.0))
    duration = float(job.get("duration_s", 4.0))
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def worker(index: int) -> None:
        n = 0
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call(index, n)
            except aio.AioRpcError as exc:
                key = f"{exc.code().name}: {exc.details()}"[:200]
                errors[key] = errors.get(key, 0) + 1
            else:
                if began >= measure_from:
                    latencies.append(time.perf_counter() - began)
            n += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return _summary(latencies, duration, errors)


def _summary(latencies: list[float], duration: float, errors: dict[str, int]) -> dict[str, Any]:
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "rps": len(latencies) / duration,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "errors": sum(errors.values()),
        "error_kinds": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
    }


async def _mode_unary(job: dict[str, Any], channel: aio.Channel) -> dict[str, Any]:
    """``method`` (full path), ``bodies`` (framed file): cycles bodies across all workers."""
    bodies = read_frames(job["bodies"])
    method = channel.unary_unary(
        job["method"], request_serializer=_identity, response_deserializer=_identity
    )
    metadata = tuple((k, v) for k, v in job.get("metadata", []))
    counter = iter(range(1 << 62))

    async def call(worker: int, n: int) -> None:
        await method(bodies[next(counter) % len(bodies)], metadata=metadata or None)

    return await _drive(job, call)


async def _mode_code_flow(job: dict[str, Any], channel: aio.Channel) -> dict[str, Any]:
    """Authorize (as ``user_token``) then Exchange the code: ``client_id``, ``client_secret``,
    ``redirect_uri``, ``verifier``, ``challenge``, ``scopes``."""
    authorize = channel.unary_unary(
        "/chitty.auth.v1.AuthService/Authorize",
        request_serializer=auth_service_pb2.AuthorizeRequest.SerializeToString,
        response_deserializer=auth_service_pb2.AuthorizeResponse.FromString,
    )
    exchange = channel.unary_unary(
        "/chitty.auth.v1.AuthService/Exchange",
        request_serializer=auth_service_pb2.ExchangeRequest.SerializeToString,
        response_deserializer=auth_service_pb2.ExchangeResponse.FromString,
    )
    metadata = (("authorization", f"Bearer {job['user_token']}"),)
    request = auth_service_pb2.AuthorizeRequest(
        response_type="code",
        client_id=job["client_id"],
        redirect_uri=job["redirect_uri"],
        scopes=job["scopes"],
        state="bench",
        code_challenge=job["challenge"],
        code_challenge_method="S256",
    )

    async def call(worker: int, n: int) -> None:
        code = (await authorize(request, metadata=metadata)).code
        await exchange(
            auth_service_pb2.ExchangeRequest(
                authorization_code=auth_service_pb2.AuthorizationCodeGrant(
                    code=code, redirect_uri=job["redirect_uri"], code_verifier=job["verifier"]
                ),
                client_id=job["client_id"],
                client_secret=job["client_secret"],
            )
        )

    return await _drive(job, call)


async def _mode_sync_state(job: dict[str, Any], channel: aio.Channel) -> dict[str, Any]:
    """Per worker ``i``: SyncSession then PutSessionState on its own session, as
    ``users[i]`` = {"token", "session", "device"}; ``mcp_server``, ``state_bytes``."""
    stub_sync = channel.unary_unary(
        "/chitty.auth.v1.SyncService/SyncSession",
        request_serializer=sync_service_pb2.SyncSessionRequest.SerializeToString,
        response_deserializer=sync_service_pb2.SyncSessionResponse.FromString,
    )
    stub_put = channel.unary_unary(
        "/chitty.auth.v1.SyncService/PutSessionState",
        request_serializer=sync_service_pb2.PutSessionStateRequest.SerializeToString,
        response_deserializer=sync_service_pb2.PutSessionStateResponse.FromString,
    )
    stub_get = channel.unary_unary(
        "/chitty.auth.v1.SyncService/GetSessionState",
        request_serializer=sync_service_pb2.GetSessionStateRequest.SerializeToString,
        response_deserializer=sync_service_pb2.GetSessionStateResponse.FromString,
    )
    users = job["users"]
    # Each run reads the version it continues from: an earlier run has already written.
    versions: list[int | None] = [None] * len(users)
    data = b"x" * int(job.get("state_bytes", 1024))

    async def call(worker: int, n: int) -> None:
        slot = worker % len(users)
        user = users[slot]
        metadata = (("authorization", f"Bearer {user['token']}"),)
        if versions[slot] is None:
            current = await stub_get(
                sync_service_pb2.GetSessionStateRequest(
                    name=user["session"], mcp_server=job["mcp_server"]
                ),
                metadata=metadata,
            )
            versions[slot] = int(current.state.version)
        await stub_sync(
            sync_service_pb2.SyncSessionRequest(
                name=user["session"], mcp_servers=[job["mcp_server"]]
            ),
            metadata=metadata,
        )
        reply = await stub_put(
            sync_service_pb2.PutSessionStateRequest(
                name=user["session"],
                mcp_server=job["mcp_server"],
                data=data,
                expected_version=versions[slot],
                device_id=user["device"],
            ),
            metadata=metadata,
        )
        versions[slot] = _version_of(reply, (versions[slot] or 0) + 1)

    return await _drive(job, call)


def _version_of(reply: Any, default: int) -> int:
    state = getattr(reply, "state", None)
    version = getattr(state, "version", None)
    return int(version) if version else default


async def _mode_watch(job: dict[str, Any], channel: aio.Channel) -> dict[str, Any]:
    """``watchers`` streams WatchSessions (as ``watch_token``, on ``session``) while one writer
    does PutSessionState ``writes`` times (as ``writer``); reports delivered events per second
    and the delay from each write's reply to its event's delivery on every stream."""
    watch = channel.unary_stream(
        "/chitty.auth.v1.SyncService/WatchSessions",
        request_serializer=sync_service_pb2.WatchSessionsRequest.SerializeToString,
        response_deserializer=sync_service_pb2.WatchSessionsResponse.FromString,
    )
    put = channel.unary_unary(
        "/chitty.auth.v1.SyncService/PutSessionState",
        request_serializer=sync_service_pb2.PutSessionStateRequest.SerializeToString,
        response_deserializer=sync_service_pb2.PutSessionStateResponse.FromString,
    )
    watchers = int(job["watchers"])
    writes = int(job["writes"])
    writer = job["writer"]
    metadata = (("authorization", f"Bearer {job['watch_token']}"),)
    write_meta = (("authorization", f"Bearer {writer['token']}"),)
    write_done: dict[int, float] = {}
    deliveries: list[tuple[int, float]] = []
    opened = 0
    all_open = asyncio.Event()
    # Every stream has seen this many events: the writer's events all arrived.
    expected = writes * watchers
    finished = asyncio.Event()

    async def watcher() -> None:
        nonlocal opened
        call = watch(
            sync_service_pb2.WatchSessionsRequest(
                name=job["session"], cursor=job.get("cursor", "")
            ),
            metadata=metadata,
        )
        opened += 1
        if opened == watchers:
            all_open.set()
        seen = 0
        try:
            async for response in call:
                if not response.event.state_version:
                    continue  # session events other than the writer's state changes
                deliveries.append((response.event.state_version, time.perf_counter()))
                seen += 1
                if len(deliveries) >= expected:
                    finished.set()
                if seen >= writes:
                    break
        finally:
            call.cancel()

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await all_open.wait()
    await asyncio.sleep(float(job.get("settle_s", 2.0)))  # let every stream reach the server
    version = int(writer.get("version", 0))
    began = time.perf_counter()
    errors: dict[str, int] = {}
    interval = float(job.get("write_interval_s", 0.02))
    for i in range(writes):
        try:
            reply = await put(
                sync_service_pb2.PutSessionStateRequest(
                    name=job["session"],
                    mcp_server=job["mcp_server"],
                    data=i.to_bytes(8, "big"),
                    expected_version=version,
                    device_id=writer["device"],
                ),
                metadata=write_meta,
            )
        except aio.AioRpcError as exc:
            key = f"{exc.code().name}: {exc.details()}"[:200]
            errors[key] = errors.get(key, 0) + 1
            break
        version = _version_of(reply, version + 1)
        write_done[version] = time.perf_counter()
        await asyncio.sleep(interval)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), timeout=float(job.get("drain_timeout_s", 20)))
    elapsed = (max((t for _, t in deliveries), default=began) - began) or 1e-9
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Delay: from the write's reply to the event carrying its version, on every stream.
    delays = sorted(t - write_done[n] for n, t in deliveries if n in write_done)
    return {
        "watchers": watchers,
        "writes": len(write_done),
        "delivered": len(deliveries),
        "expected": expected,
        "events_per_s": len(deliveries) / elapsed,
        "delay_p50_ms": delays[len(delays) // 2] * 1000 if delays else 0.0,
        "delay_p99_ms": delays[min(len(delays) - 1, int(0.99 * len(delays)))] * 1000
        if delays
        else 0.0,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


MODES = {
    "unary": _mode_unary,
    "code_flow": _mode_code_flow,
    "sync_state": _mode_sync_state,
    "watch": _mode_watch,
}


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Opens one channel to ``target`` and runs the job's mode on it."""
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    async with aio.insecure_channel(job["target"], options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        return await MODES[job["mode"]](job, channel)


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await run_job(job))

    run_loop(go())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    grpc.aio.init_grpc_aio()
    sys.exit(main())
