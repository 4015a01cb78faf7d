"""Portal login with Cloudflare Access assertions, against a real dev authority."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, session_pb2, token_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, replace
from chittyauth.store.protocol import AuditQuery
from tests.identity_flows.helpers import details
from tests.support.devauthority import DevAuthority


def portal_request(assertion: str, email: str = "") -> auth_service_pb2.AuthenticateRequest:
    return auth_service_pb2.AuthenticateRequest(
        portal=auth_service_pb2.PortalCredential(assertion=assertion, email=email),
        device=auth_service_pb2.DeviceHint(
            device_id="laptop-1", display_name="Laptop", client_type=session_pb2.CLIENT_TYPE_WEB
        ),
    )


def rows(server: Server, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(server.config.store.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def portal_failures(server: Server) -> list[str]:
    events = await server.store.list_audit_events(AuditQuery(action="auth.portal", limit=100))
    return [e.attributes["reason"] for e in events if e.outcome == "failure"]


async def test_first_login_mints_once_and_later_logins_reuse_it(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    before = await dev_authority.minted_ids()

    first = await stub.Authenticate(
        portal_request(await dev_authority.mint_assertion("Ada@Example.com"), "ada@example.com")
    )
    second = await stub.Authenticate(
        portal_request(await dev_authority.mint_assertion("ada@example.com"))
    )

    minted = sorted(set(await dev_authority.minted_ids()) - set(before))
    assert minted == [first.chitty_id]
    assert second.chitty_id == first.chitty_id
    assert first.token_use == token_pb2.TOKEN_USE_PORTAL
    assert first.portal_url == id_server.config.portal.portal_url
    assert first.session_id
    # A person's logins share their active session (its devices are listed in it).
    assert second.session_id == first.session_id
    assert rows(id_server, "SELECT email, chitty_id FROM portal_identities") == [
        ("ada@example.com", first.chitty_id)
    ]
    validated = await stub.Validate(
        auth_service_pb2.ValidateRequest(
            token=first.access_token, token_use=token_pb2.TOKEN_USE_PORTAL
        )
    )
    assert validated.active
    assert validated.claims.sub == first.chitty_id
    assert validated.claims.chitty_id == first.chitty_id
    assert validated.claims.sid == first.session_id
    session_row = rows(
        id_server, f"SELECT chitty_id FROM sessions WHERE session_id = '{first.session_id}'"
    )
    assert session_row == [(first.chitty_id,)]


async def test_concurrent_first_logins_mint_exactly_one_chitty_id(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    before = set(await dev_authority.minted_ids())
    assertions = [await dev_authority.mint_assertion("race@example.com") for _ in range(5)]

    answers = await asyncio.gather(*(stub.Authenticate(portal_request(a)) for a in assertions))

    assert len({a.chitty_id for a in answers}) == 1
    assert set(await dev_authority.minted_ids()) - before == {answers[0].chitty_id}


def _tamper(assertion: str) -> str:
    header, payload, signature = assertion.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "mallory@example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def _foreign_key_assertion(issuer: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "aud": ["chittyauth-dev"], "email": "eve@example.com", "iss": issuer,
        "exp": now + 300, "iat": now, "sub": "eve",
    }  # fmt: skip
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "not-a-published-kid"})


async def _refused(stub: auth_service_pb2_grpc.AuthServiceStub, request: object) -> str:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "invalid Cloudflare Access assertion"
    return details(caught.value)[0]


async def test_every_access_refusal_is_unauthenticated_and_audited(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    before = set(await dev_authority.minted_ids())
    good = await dev_authority.mint_assertion("bob@example.com")

    reasons = [
        await _refused(
            stub,
            portal_request(await dev_authority.mint_assertion("bob@example.com", audience="other")),
        ),
        await _refused(stub, portal_request(_foreign_key_assertion(dev_authority.base_url))),
        await _refused(stub, portal_request(_tamper(good))),
        await _refused(stub, portal_request(good, email="someone-else@example.com")),
        await _refused(stub, portal_request("not-a-jwt")),
    ]
    clock.advance(3600)
    reasons.append(await _refused(stub, portal_request(good)))

    assert reasons == [
        "ACCESS_WRONG_AUDIENCE",
        "ACCESS_UNKNOWN_KEY",
        "ACCESS_BAD_SIGNATURE",
        "ACCESS_EMAIL_MISMATCH",
        "ACCESS_MALFORMED",
        "ACCESS_EXPIRED",
    ]
    assert await portal_failures(id_server) == reasons
    assert rows(id_server, "SELECT COUNT(*) FROM portal_identities") == [(0,)]
    assert set(await dev_authority.minted_ids()) == before


async def test_wrong_issuer_is_refused(
    id_config: Config, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    # Keys from the dev authority, but a team domain the dev authority does not issue for.
    config = replace(
        id_config,
        portal=dataclasses.replace(
            id_config.portal,
            team_domain="https://team.cloudflareaccess.example",
            certs_url=dev_authority.certs_url,
        ),
    )
    server = Server(config, clock=clock)
    await server.start()
    try:
        async with aio.insecure_channel(server.grpc_target) as channel:
            stub = auth_service_pb2_grpc.AuthServiceStub(channel)
            reason = await _refused(
                stub, portal_request(await dev_authority.mint_assertion("bob@example.com"))
            )
        assert reason == "ACCESS_WRONG_ISSUER"
        assert await portal_failures(server) == ["ACCESS_WRONG_ISSUER"]
    finally:
        await server.stop(grace=1.0)
