"""AuditService over gRPC: filters, pages, refusals, and VerifyAuditLog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import audit_pb2, audit_service_pb2, audit_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditRecord
from tests.conftest import bearer


async def seed(server: Server, count: int) -> None:
    for i in range(count):
        async with server.store.transaction() as tx:
            outcome = "success" if i % 2 else "failure"
            await tx.audit(AuditRecord("ops", f"user-{i % 3}", "test.step", outcome))


async def test_pages_cover_every_event_once(
    server: Server, channel: aio.Channel, admin_token: str
) -> None:
    await seed(server, 7)
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    seen: list[int] = []
    token = ""
    while True:
        page = await stub.ListAuditEvents(
            audit_service_pb2.ListAuditEventsRequest(
                action="test.step", page_size=3, page_token=token
            ),
            metadata=bearer(admin_token),
        )
        seen.extend(e.sequence for e in page.events)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7
    assert seen == sorted(set(seen))

    failures = await stub.ListAuditEvents(
        audit_service_pb2.ListAuditEventsRequest(
            action="test.step", subject="user-0", outcome=audit_pb2.AUDIT_OUTCOME_FAILURE
        ),
        metadata=bearer(admin_token),
    )
    assert [(e.subject, e.outcome) for e in failures.events] == [
        ("user-0", audit_pb2.AUDIT_OUTCOME_FAILURE)
    ] * 2
    verified = await stub.VerifyAuditLog(
        audit_service_pb2.VerifyAuditLogRequest(), metadata=bearer(admin_token)
    )
    assert verified.valid
    assert verified.checked_count >= 7


async def test_refusals(
    channel: aio.Channel, admin_token: str, token_for: Callable[..., Awaitable[str]]
) -> None:
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    request = audit_service_pb2.ListAuditEventsRequest()
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListAuditEvents(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reader = await token_for(scopes=("mcp:read",))
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListAuditEvents(request, metadata=bearer(reader))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad in ("not-a-token", "x" * 5000):
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ListAuditEvents(
                audit_service_pb2.ListAuditEventsRequest(page_token=bad),
                metadata=bearer(admin_token),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    auditor = await token_for(scopes=("audit:read",))
    page = await stub.ListAuditEvents(request, metadata=bearer(auditor))
    assert len(page.events) >= 1
