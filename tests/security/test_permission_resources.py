"""Permission resources are canonical: no dot segments, empty segments or encoded separators.

A grant on ``projects/a/*`` matches by prefix, so ``projects/a/../b`` (which a resource server
may resolve to ``projects/b``) must never reach the matcher; nor may its encoded spellings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import permission_service_pb2 as ps
from chitty.auth.v1 import permission_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.identity_flows.conftest import clock, id_channel, id_config, id_server, mint_token
from tests.identity_flows.helpers import details
from tests.support.devauthority import DevAuthority

__all__ = ["clock", "id_channel", "id_config", "id_server", "mint_token"]

Mint = Callable[..., Awaitable[str]]

NOT_CANONICAL = [
    "projects/a/../b",
    "projects/a/..",
    "projects/a/./b",
    "./projects",
    "../projects",
    "projects/a//b",
    "/projects/a",
    "projects/a/",
    "projects/a/%2e%2e/b",
    "projects/a/%2E%2E/b",
    "projects/a/.%2e/b",
    "projects/a%2f..%2fb",
    "projects/a%2F..%2Fb",
    "projects/a/..%2fb",
    "projects/a/..%5cb",
    "projects/a/..\\b",
    "projects\\a",
    "projects/a/%252e%252e/b",
    "projects/a/%c0%ae%c0%ae/b",
    "projects/a/%zz",
    "projects/a/\uff0e\uff0e/b",
    "projects/a/\u2025/b",
    "projects/a\uff0fb",
]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def person(dev_authority: DevAuthority) -> str:
    minted = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    return str(minted["chittyId"])


@pytest.fixture
async def parties(
    id_channel: aio.Channel, dev_authority: DevAuthority, mint_token: Mint
) -> tuple[permission_service_pb2_grpc.PermissionServiceStub, str, str, str]:
    """The stub, the grantor's and the grantee's tokens, and the grantee's ChittyID, with a
    grant on ``projects/a/*`` from the one to the other."""
    stub = permission_service_pb2_grpc.PermissionServiceStub(id_channel)
    grantor, grantee = await person(dev_authority), await person(dev_authority)
    grantor_token = await mint_token(
        subject=grantor, chitty_id=grantor, scopes=("authorizations:grant",), token_use="portal"
    )
    grantee_token = await mint_token(
        subject=grantee, chitty_id=grantee, scopes=(), token_use="portal"
    )
    await stub.GrantPermission(
        ps.GrantPermissionRequest(
            grantee_chitty_id=grantee, permission="docs:read", resource="projects/a/*"
        ),
        metadata=auth(grantor_token),
    )
    return stub, grantor_token, grantee_token, grantee


async def refused_check(
    stub: permission_service_pb2_grpc.PermissionServiceStub, token: str, who: str, resource: str
) -> aio.AioRpcError:
    try:
        answer = await stub.CheckPermission(
            ps.CheckPermissionRequest(chitty_id=who, permission="docs:read", resource=resource),
            metadata=auth(token),
        )
    except aio.AioRpcError as error:
        return error
    pytest.fail(f"{resource!r} was answered: allowed={answer.allowed}")


@pytest.mark.parametrize("resource", NOT_CANONICAL)
async def test_check_refuses_a_resource_that_is_not_canonical(
    parties: tuple[permission_service_pb2_grpc.PermissionServiceStub, str, str, str],
    resource: str,
) -> None:
    stub, _, grantee_token, grantee = parties
    error = await refused_check(stub, grantee_token, grantee, resource)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error)[0] == "INVALID_RESOURCE"


async def test_the_grant_still_covers_what_is_below_it(
    parties: tuple[permission_service_pb2_grpc.PermissionServiceStub, str, str, str],
) -> None:
    stub, _, grantee_token, grantee = parties
    for resource, allowed in [
        ("projects/a/readme", True),
        ("projects/a/docs/v1.2/notes.md", True),
        ("projects/a/..b", True),  # a name with dots is a name, not a dot segment
        ("projects/a/caf%C3%A9", True),  # an encoded letter is no separator
        ("projects/b/readme", False),
        ("projects/a", False),
    ]:
        answer = await stub.CheckPermission(
            ps.CheckPermissionRequest(chitty_id=grantee, permission="docs:read", resource=resource),
            metadata=auth(grantee_token),
        )
        assert answer.allowed is allowed, resource


@pytest.mark.parametrize(
    "resource", ["projects/../*", "projects/a//*", "projects/%2e%2e/*", "projects/a/./b"]
)
async def test_grant_refuses_a_resource_that_is_not_canonical(
    id_server: Server,
    parties: tuple[permission_service_pb2_grpc.PermissionServiceStub, str, str, str],
    resource: str,
) -> None:
    stub, grantor_token, _, grantee = parties
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GrantPermission(
            ps.GrantPermissionRequest(
                grantee_chitty_id=grantee, permission="docs:read", resource=resource
            ),
            metadata=auth(grantor_token),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[0] == "INVALID_RESOURCE"
    refusals = await id_server.store.list_audit_events(
        AuditQuery(action="permission.grant", outcome="failure")
    )
    assert refusals
    assert refusals[-1].attributes.get("reason") == "INVALID_RESOURCE"
