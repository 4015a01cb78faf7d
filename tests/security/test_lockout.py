"""The password lockout counts every wrong password, concurrent guesses included."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.store.protocol import AuditQuery
from tests.identity_flows.conftest import clock, id_channel, id_config, id_server
from tests.identity_flows.helpers import details

__all__ = ["clock", "id_channel", "id_config", "id_server"]

PASSWORD = "correct horse battery staple"
EMAIL = "lock@example.com"
GUESSES = 12


def login(password: str) -> auth_service_pb2.AuthenticateRequest:
    return auth_service_pb2.AuthenticateRequest(
        password=auth_service_pb2.PasswordCredential(email=EMAIL, password=password)
    )


async def wrong_guess(stub: auth_service_pb2_grpc.AuthServiceStub, n: int) -> str:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(login(f"wrong password number {n}"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return details(caught.value)[0]


def stored_failures(server: Server) -> tuple[int, float]:
    conn = sqlite3.connect(server.config.store.path)
    try:
        row = conn.execute(
            "SELECT failed_logins, locked_until FROM accounts WHERE email = ?", (EMAIL,)
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), float(row[1])


async def test_concurrent_wrong_passwords_lock_the_account(
    id_server: Server, id_channel: aio.Channel
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(email=EMAIL, password=PASSWORD)
    )
    threshold = id_server.config.rate_limits.login_failures_before_lockout
    assert 0 < threshold < GUESSES

    reasons = await asyncio.gather(*(wrong_guess(stub, n) for n in range(GUESSES)))
    assert reasons == ["INVALID_CREDENTIALS"] * GUESSES

    # Every guess was counted, and the count crossed the threshold: the account is locked.
    failed, locked_until = stored_failures(id_server)
    assert failed == GUESSES
    assert locked_until > 0
    locked = await id_server.store.list_audit_events(AuditQuery(action="auth.locked"))
    assert len(locked) == 1
    failures = await id_server.store.list_audit_events(AuditQuery(action="auth.password"))
    assert len(failures) == GUESSES

    # The right password is now refused, the same way a wrong one is, and audited as locked.
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(login(PASSWORD))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(caught.value)[0] == "INVALID_CREDENTIALS"
    failures = await id_server.store.list_audit_events(AuditQuery(action="auth.password"))
    # The guesses past the threshold met the lock, and so did the right password.
    audited = [e.attributes["reason"] for e in failures]
    assert audited.count("INVALID_CREDENTIALS") == threshold
    assert audited.count("ACCOUNT_LOCKED") == GUESSES - threshold + 1
    assert stored_failures(id_server)[0] == GUESSES


async def test_lock_expiry_restarts_the_count(
    id_server: Server, id_channel: aio.Channel, clock: FakeClock
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(email=EMAIL, password=PASSWORD)
    )
    limits = id_server.config.rate_limits
    await asyncio.gather(*(wrong_guess(stub, n) for n in range(GUESSES)))
    clock.advance(limits.lockout_s + 1)

    # The lock has run out: one wrong guess starts a fresh count, not a new lock.
    await wrong_guess(stub, 99)
    assert stored_failures(id_server) == (1, 0.0)
    answer = await stub.Authenticate(login(PASSWORD))
    assert answer.access_token
    assert stored_failures(id_server) == (0, 0.0)
