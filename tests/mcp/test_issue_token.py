"""AuthService.IssueToken (the historical generate_jwt) against the real dev authority."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.config import Config
from tests.identity_flows.conftest import identity_config
from tests.identity_flows.helpers import details
from tests.support.consent import record_consent
from tests.support.devauthority import DevAuthority

Mint = Callable[..., Awaitable[str]]


@pytest.fixture
def config(config: Config, dev_authority: DevAuthority) -> Config:
    return identity_config(config, dev_authority)


def meta(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def issue_events(server: Server) -> list[tuple[str, str, str, dict[str, str]]]:
    conn = sqlite3.connect(Path(server.config.store.path))
    try:
        rows = conn.execute(
            "SELECT actor, subject, outcome, attributes FROM audit_events"
            " WHERE action = 'token.issued' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    return [(a, s, o, json.loads(attrs)) for a, s, o, attrs in rows]


async def refused(call: Awaitable[object], code: grpc.StatusCode) -> str:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return details(caught.value)[0]


async def test_issue_token_for_a_chitty_id(
    server: Server, channel: aio.Channel, dev_authority: DevAuthority, token_for: Mint
) -> None:
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    minted = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    chitty_id = minted["chittyId"]
    admin = await token_for()
    extra = struct_pb2.Struct()
    extra.update({"team": "blue"})
    reply = await auth.IssueToken(
        auth_service_pb2.IssueTokenRequest(
            chitty_id=chitty_id,
            ttl=duration_pb2.Duration(seconds=120),
            extra_claims=extra,
            scopes=["documents:read"],
            audiences=["chittychat"],
        ),
        metadata=meta(admin),
    )
    assert reply.token_type == "Bearer"
    assert reply.jti
    verdict = await auth.Validate(auth_service_pb2.ValidateRequest(token=reply.access_token))
    assert verdict.active
    claims = verdict.claims
    assert claims.sub == chitty_id
    assert claims.chitty_id == chitty_id
    assert list(claims.scopes) == ["documents:read"]
    assert list(claims.aud) == ["chittychat"]
    assert claims.token_use == token_pb2.TOKEN_USE_USER
    assert claims.extra_claims["team"] == "blue"
    assert claims.act.sub == "test-admin"
    assert claims.expire_time.seconds - claims.issue_time.seconds == 120

    actor, subject, outcome, attrs = issue_events(server)[-1]
    assert (actor, subject, outcome) == ("test-admin", chitty_id, "success")
    assert attrs["grant"] == "issue_token"
    assert attrs["extra_claims"] == "team"
    assert reply.access_token not in json.dumps(attrs)


async def test_issue_token_refusals(
    server: Server, channel: aio.Channel, dev_authority: DevAuthority, token_for: Mint
) -> None:
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    chitty_id = (await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"}))[
        "chittyId"
    ]
    admin = await token_for()
    issuer = await token_for(subject="issuer", scopes=("tokens:issue", "documents:read"))
    plain = await token_for(subject="nobody", scopes=("documents:read",))

    def request(**fields: object) -> auth_service_pb2.IssueTokenRequest:
        return auth_service_pb2.IssueTokenRequest(chitty_id=chitty_id, **fields)  # type: ignore[arg-type]

    await refused(auth.IssueToken(request()), grpc.StatusCode.UNAUTHENTICATED)
    reason = await refused(
        auth.IssueToken(request(), metadata=meta(plain)), grpc.StatusCode.PERMISSION_DENIED
    )
    assert reason == "INSUFFICIENT_SCOPE"
    # The right to issue is not a way to escalate: only scopes the caller holds.
    reason = await refused(
        auth.IssueToken(request(scopes=["chittyauth:admin"]), metadata=meta(issuer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert reason == "SCOPE_NOT_HELD"
    # Naming a ChittyID grants nothing: the person must have consented to the issuing client.
    reason = await refused(
        auth.IssueToken(request(scopes=["documents:read"]), metadata=meta(issuer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert reason == "CONSENT_REQUIRED"
    await record_consent(server, chitty_id, "test-client", ["documents:read"])
    ok = await auth.IssueToken(request(scopes=["documents:read"]), metadata=meta(issuer))
    assert ok.access_token

    extra = struct_pb2.Struct()
    extra.update({"sub": "someone-else"})
    reason = await refused(
        auth.IssueToken(request(extra_claims=extra), metadata=meta(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason == "RESERVED_CLAIM"
    for ttl in (duration_pb2.Duration(seconds=0), duration_pb2.Duration(seconds=10**7)):
        reason = await refused(
            auth.IssueToken(request(ttl=ttl), metadata=meta(admin)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert reason == "INVALID_TTL"
    reason = await refused(
        auth.IssueToken(request(token_use=token_pb2.TOKEN_USE_PORTAL), metadata=meta(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason == "TOKEN_USE_NOT_ISSUABLE"
    reason = await refused(
        auth.IssueToken(
            auth_service_pb2.IssueTokenRequest(chitty_id="not a chitty id"), metadata=meta(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason == "INVALID_CHITTY_ID"

    # Fail closed: with the authority down, no token.
    await dev_authority.stop()
    other = "AB-C-PEO-4321-P-56-H-7"
    reason = await refused(
        auth.IssueToken(auth_service_pb2.IssueTokenRequest(chitty_id=other), metadata=meta(admin)),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert reason == "AUTHORITY_UNAVAILABLE"

    failures = [e for e in issue_events(server) if e[2] == "failure"]
    assert {e[3]["reason"] for e in failures} >= {
        "INSUFFICIENT_SCOPE", "SCOPE_NOT_HELD", "RESERVED_CLAIM", "INVALID_TTL",
        "TOKEN_USE_NOT_ISSUABLE", "INVALID_CHITTY_ID", "AUTHORITY_UNAVAILABLE",
        "CONSENT_REQUIRED",
    }  # fmt: skip
