"""Helpers for the identity flow tests."""

from __future__ import annotations

import asyncio
import sqlite3

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chittyauth.app import Server
from chittyauth.rpc.errors import STATUS_DETAILS_KEY

AUTH = "chitty.auth.v1.AuthService"


def count(server: Server, table: str) -> int:
    """The rows of ``table`` in ``server``'s database."""
    conn = sqlite3.connect(server.config.store.path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def wait_for_health(channel: aio.Channel, status: int) -> None:
    """Waits (at most 10 s) until AuthService health reads ``status``."""
    stub = health_pb2_grpc.HealthStub(channel)
    for _ in range(200):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=AUTH))
        if answer.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"AuthService health never became {status}")


def details(error: aio.AioRpcError) -> tuple[str, float | None]:
    """The ErrorInfo reason and the RetryInfo delay (seconds, or None) of a refused call."""
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    reason, retry = "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry_info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry_info):
            delay: duration_pb2.Duration = retry_info.retry_delay
            retry = delay.seconds + delay.nanos / 1e9
    return reason, retry
