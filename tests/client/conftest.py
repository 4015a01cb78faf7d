"""Fixtures for the client tests: an admin service client with real client credentials."""

from __future__ import annotations

import pytest
from grpc import aio

from chitty.auth.client import ClientCredentials
from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from tests.conftest import bearer


async def create_service_client(
    channel: aio.Channel, admin_token: str, client_id: str, scopes: tuple[str, ...]
) -> ClientCredentials:
    """Registers a confidential service client allowed the client_credentials grant."""
    stub = client_service_pb2_grpc.ClientServiceStub(channel)  # type: ignore[no-untyped-call]
    reply = await stub.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                client_id=client_id,
                display_name=client_id,
                kind=client_pb2.CLIENT_KIND_SERVICE,
                confidential=True,
                allowed_scopes=list(scopes),
                grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
            )
        ),
        metadata=bearer(admin_token),
    )
    return ClientCredentials(client_id, reply.client_secret, scopes=scopes)


@pytest.fixture
async def admin_creds(channel: aio.Channel, admin_token: str) -> ClientCredentials:
    return await create_service_client(channel, admin_token, "ops-admin", ("chittyauth:admin",))
