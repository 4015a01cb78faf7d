"""Helpers for the attacking tests: reading the refusal a real server gave."""

from __future__ import annotations

from typing import Any

from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chittyauth.app import Server
from chittyauth.rpc.errors import STATUS_DETAILS_KEY


def error_info(error: aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of a refused call (domain ``auth.chitty.cc``)."""
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "auth.chitty.cc"
    return info.reason, dict(info.metadata)


async def mint(server: Server, claims: dict[str, Any], *, client_id: str = "test-client") -> str:
    """A real access token signed by ``server``'s own token service, from a claims spec
    (``subject``, ``token_use``, ``scopes`` and any other claim ``issue`` takes)."""
    fields = dict(claims)
    async with server.store.transaction() as tx:
        issued = await server.tokens.issue(
            tx,
            subject=fields.pop("subject"),
            client_id=fields.pop("client_id", client_id),
            token_use=fields.pop("token_use"),
            scopes=fields.pop("scopes"),
            **fields,
        )
    return issued.token
