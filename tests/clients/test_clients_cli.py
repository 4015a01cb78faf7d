"""``clients_create``: the CLI way to the first administrator."""

from __future__ import annotations

import io
import re

from grpc import aio

from chitty.auth.v1 import client_service_pb2, client_service_pb2_grpc
from chittyauth.clients_cli import clients_create
from chittyauth.config import Config
from tests.clients.helpers import audit_events, running
from tests.conftest import bearer


async def test_create_admin_then_use_it(config: Config) -> None:
    out = io.StringIO()
    code = await clients_create(
        config, client_id="ops-admin", name="Operations", admin=True, out=out
    )
    assert code == 0
    printed = out.getvalue()
    assert "client_id: ops-admin" in printed
    match = re.search(r"client_secret: (cs_\S+)", printed)
    assert match is not None
    secret = match.group(1)

    async with running(config) as server:
        record = server.clients.get("ops-admin")
        assert record is not None
        assert (record.kind, record.source) == ("service", "cli")
        assert record.allowed_scopes == ("chittyauth:admin",)
        issued = await server.grants.client_credentials(
            "ops-admin", secret, ["chittyauth:admin"], [], request_id="t"
        )
        async with aio.insecure_channel(server.grpc_target) as chan:
            stub = client_service_pb2_grpc.ClientServiceStub(chan)
            listed = await stub.ListClients(
                client_service_pb2.ListClientsRequest(), metadata=bearer(issued.token)
            )
        assert [c.client_id for c in listed.clients] == ["ops-admin"]
        [event] = await audit_events(server, "client.created")
        assert (event.actor, event.attributes["source"]) == ("system:cli", "cli")


async def test_refusals_exit_1_with_a_message(config: Config) -> None:
    assert await clients_create(config, client_id="dup", name="D", out=io.StringIO()) == 0
    err = io.StringIO()
    assert await clients_create(config, client_id="dup", name="D", err=err) == 1
    assert "exists already" in err.getvalue()
    err = io.StringIO()
    code = await clients_create(
        config, name="Bad", kind="linked_app", redirect_uris=["http://evil.example/cb"], err=err
    )
    assert code == 1
    assert "loopback" in err.getvalue()
