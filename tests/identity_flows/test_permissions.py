"""PermissionService: grant, check (expiry, resource, wildcards), grantor rights, revoke."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

from chitty.auth.v1 import permission_service_pb2 as ps
from chitty.auth.v1 import permission_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.store.protocol import AuditQuery
from tests.support.devauthority import DevAuthority

Mint = Callable[..., Awaitable[str]]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def person(dev_authority: DevAuthority) -> str:
    return str(
        (await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"}))["chittyId"]
    )


async def test_grant_check_expiry_resource_wildcard_and_revoke(
    id_server: Server,
    id_channel: aio.Channel,
    dev_authority: DevAuthority,
    mint_token: Mint,
    clock: FakeClock,
) -> None:
    stub = permission_service_pb2_grpc.PermissionServiceStub(id_channel)
    grantor, grantee = await person(dev_authority), await person(dev_authority)
    grantor_token = await mint_token(
        subject=grantor, scopes=("authorizations:grant",), token_use="portal"
    )
    checker = await mint_token(subject="svc", scopes=("authorizations:check",))

    async def check(permission: str, resource: str = "") -> bool:
        answer = await stub.CheckPermission(
            ps.CheckPermissionRequest(chitty_id=grantee, permission=permission, resource=resource),
            metadata=auth(checker),
        )
        return answer.allowed

    expiring = await stub.GrantPermission(
        ps.GrantPermissionRequest(
            grantee_chitty_id=grantee, permission="docs:read", resource="projects/a/*",
            expire_time=timestamp_pb2.Timestamp(seconds=int(clock.now()) + 60),
        ),
        metadata=auth(grantor_token),
    )  # fmt: skip
    assert expiring.grant.grantor_chitty_id == grantor
    assert await check("docs:read", "projects/a/readme")
    assert not await check("docs:read", "projects/b/readme")  # resource mismatch
    assert not await check("docs:read", "projects/a")  # `a/*` is strictly below `a`
    assert not await check("docs:read")  # empty asks about every resource
    assert not await check("docs:write", "projects/a/readme")

    clock.advance(61)
    assert not await check("docs:read", "projects/a/readme")  # lapsed

    wildcard = await stub.GrantPermission(
        ps.GrantPermissionRequest(grantee_chitty_id=grantee, permission="docs:*"),
        metadata=auth(grantor_token),
    )
    answer = await stub.CheckPermission(
        ps.CheckPermissionRequest(chitty_id=grantee, permission="docs:write", resource="x/y"),
        metadata=auth(checker),
    )
    assert answer.allowed
    assert answer.grant.grant_id == wildcard.grant.grant_id
    assert await check("docs:read")
    assert not await check("mail:read")

    listed = await stub.ListPermissions(
        ps.ListPermissionsRequest(chitty_id=grantee, page_size=1, include_inactive=True),
        metadata=auth(await mint_token()),
    )
    assert len(listed.grants) == 1
    assert listed.next_page_token
    rest = await stub.ListPermissions(
        ps.ListPermissionsRequest(
            chitty_id=grantee, page_size=5, include_inactive=True,
            page_token=listed.next_page_token,
        ),
        metadata=auth(await mint_token()),
    )  # fmt: skip
    assert [g.grant_id for g in (*listed.grants, *rest.grants)] == [
        expiring.grant.grant_id,
        wildcard.grant.grant_id,
    ]

    revoked = await stub.RevokePermission(
        ps.RevokePermissionRequest(grant_id=wildcard.grant.grant_id), metadata=auth(grantor_token)
    )
    assert revoked.grant.HasField("revoke_time")
    assert not await check("docs:write", "x/y")
    events = await id_server.store.list_audit_events(AuditQuery(action="permission.revoke"))
    assert [e.resource for e in events] == [wildcard.grant.grant_id]


async def test_grantor_without_the_right_is_refused(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority, mint_token: Mint
) -> None:
    stub = permission_service_pb2_grpc.PermissionServiceStub(id_channel)
    grantor, grantee = await person(dev_authority), await person(dev_authority)
    plain = await mint_token(subject=grantor, scopes=("mcp:read",), token_use="portal")
    scoped = await mint_token(subject=grantor, scopes=("grant:projects/a",), token_use="portal")

    for token, resource in ((plain, ""), (scoped, "projects/b")):
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GrantPermission(
                ps.GrantPermissionRequest(
                    grantee_chitty_id=grantee, permission="docs:read", resource=resource
                ),
                metadata=auth(token),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Naming another grantor needs admin.
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GrantPermission(
            ps.GrantPermissionRequest(
                grantee_chitty_id=grantee, permission="docs:read", grantor_chitty_id=grantee
            ),
            metadata=auth(await mint_token(subject=grantor, scopes=("authorizations:grant",))),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    allowed = await stub.GrantPermission(
        ps.GrantPermissionRequest(
            grantee_chitty_id=grantee, permission="docs:read", resource="projects/a"
        ),
        metadata=auth(scoped),
    )
    assert allowed.grant.resource == "projects/a"
    # Only the grantor (or an admin) may revoke; anyone else is told it does not exist.
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RevokePermission(
            ps.RevokePermissionRequest(grant_id=allowed.grant.grant_id),
            metadata=auth(await mint_token(subject=grantee, scopes=(), token_use="portal")),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    failures = await id_server.store.list_audit_events(AuditQuery(action="permission.grant"))
    assert sum(e.outcome == "failure" for e in failures) == 3
