"""Password accounts: registration, login, indistinguishable refusals, lockout."""

from __future__ import annotations

import sqlite3

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.store.protocol import AuditQuery
from tests.identity_flows.helpers import details
from tests.support.devauthority import DevAuthority

PASSWORD = "correct horse battery staple"


def login(email: str, password: str) -> auth_service_pb2.AuthenticateRequest:
    return auth_service_pb2.AuthenticateRequest(
        password=auth_service_pb2.PasswordCredential(email=email, password=password)
    )


async def refusal(
    stub: auth_service_pb2_grpc.AuthServiceStub, email: str, password: str
) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(login(email, password))
    error = caught.value
    return error.code(), details(error)[0], error.details() or ""


async def test_register_then_login(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    registered = await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(
            email="  Dana@Example.COM ", password=PASSWORD, display_name="Dana"
        )
    )
    account = registered.account
    assert account.email == "dana@example.com"
    assert account.chitty_id in await dev_authority.minted_ids()

    conn = sqlite3.connect(id_server.config.store.path)
    (stored,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    conn.close()
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert PASSWORD not in stored

    answer = await stub.Authenticate(login("dana@example.com", PASSWORD))
    assert answer.chitty_id == account.chitty_id
    assert answer.token_use == token_pb2.TOKEN_USE_USER
    assert answer.session_id

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RegisterAccount(
            auth_service_pb2.RegisterAccountRequest(email="dana@example.com", password=PASSWORD)
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("email", "password"),
    [("not-an-email", PASSWORD), ("e@example.com", "short"), ("x" * 250 + "@a.io", PASSWORD)],
)
async def test_registration_validates_input(
    id_channel: aio.Channel, email: str, password: str
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RegisterAccount(
            auth_service_pb2.RegisterAccountRequest(email=email, password=password)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_email_is_indistinguishable_from_wrong_password(
    id_channel: aio.Channel,
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(email="erin@example.com", password=PASSWORD)
    )
    wrong = await refusal(stub, "erin@example.com", "not the password at all")
    unknown = await refusal(stub, "nobody@example.com", "not the password at all")
    assert (
        wrong
        == unknown
        == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS", "invalid email or password")
    )


async def test_lockout_after_repeated_failures(
    id_server: Server, id_channel: aio.Channel, clock: FakeClock
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(email="finn@example.com", password=PASSWORD)
    )
    limits = id_server.config.rate_limits
    for _ in range(limits.login_failures_before_lockout):
        await refusal(stub, "finn@example.com", "wrong password!!")

    # Locked: even the right password gets the very same answer as an unknown email.
    assert await refusal(stub, "finn@example.com", PASSWORD) == await refusal(
        stub, "ghost@example.com", PASSWORD
    )
    locked = await id_server.store.list_audit_events(AuditQuery(action="auth.locked"))
    assert len(locked) == 1
    failures = await id_server.store.list_audit_events(AuditQuery(action="auth.password"))
    assert [e.attributes["reason"] for e in failures].count("ACCOUNT_LOCKED") == 1

    clock.advance(limits.lockout_s + 1)
    answer = await stub.Authenticate(login("finn@example.com", PASSWORD))
    assert answer.access_token
