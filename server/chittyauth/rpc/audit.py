"""AuditService: list and verify the hash-chained audit log (admin)."""

from __future__ import annotations

from typing import Any

from grpc import aio

from chitty.auth.v1 import audit_pb2, audit_service_pb2, audit_service_pb2_grpc
from chittyauth.domain.errors import InvalidRequest
from chittyauth.domain.paging import decode_page_token, encode_page_token, page_size
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.convert import seconds, timestamp
from chittyauth.store.protocol import AuditQuery, Outcome, StoredAuditEvent
from chittyauth.store.sqlite import SqliteStore

Context = aio.ServicerContext[Any, Any]

_OUTCOMES: dict[int, Outcome | None] = {
    audit_pb2.AUDIT_OUTCOME_UNSPECIFIED: None,
    audit_pb2.AUDIT_OUTCOME_SUCCESS: "success",
    audit_pb2.AUDIT_OUTCOME_FAILURE: "failure",
}


def event_message(event: StoredAuditEvent) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        sequence=event.seq,
        event_time=timestamp(event.event_time),
        actor=event.actor,
        subject=event.subject,
        action=event.action,
        outcome=(
            audit_pb2.AUDIT_OUTCOME_SUCCESS
            if event.outcome == "success"
            else audit_pb2.AUDIT_OUTCOME_FAILURE
        ),
        resource=event.resource,
        request_id=event.request_id,
        attributes=dict(event.attributes),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    """ListAuditEvents and VerifyAuditLog; scope chittyauth:admin or audit:read."""

    def __init__(self, store: SqliteStore, resolver: PrincipalResolver) -> None:
        self._store = store
        self._resolver = resolver

    async def ListAuditEvents(
        self, request: audit_service_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_service_pb2.ListAuditEventsResponse:
        caller(self._resolver)  # admitted by the policy gate (audit:read)
        size = page_size(request.page_size, default=100, maximum=1000)
        position = decode_page_token(request.page_token, ("audit",))
        if request.outcome not in _OUTCOMES:
            raise InvalidRequest("unknown outcome", reason="INVALID_OUTCOME")
        query = AuditQuery(
            subject=request.subject,
            actor=request.actor,
            action=request.action,
            outcome=_OUTCOMES[request.outcome],
            start_time=seconds(request.start_time) if request.HasField("start_time") else None,
            end_time=seconds(request.end_time) if request.HasField("end_time") else None,
            after_seq=int(position[0]) if position else 0,
            limit=size + 1,
        )
        events = await self._store.list_audit_events(query)
        more = len(events) > size
        events = events[:size]
        return audit_service_pb2.ListAuditEventsResponse(
            events=[event_message(e) for e in events],
            next_page_token=(
                encode_page_token(events[-1].seq, "", ("audit",)) if more and events else ""
            ),
        )

    async def VerifyAuditLog(
        self, request: audit_service_pb2.VerifyAuditLogRequest, context: Context
    ) -> audit_service_pb2.VerifyAuditLogResponse:
        caller(self._resolver)  # admitted by the policy gate (audit:read)
        result = await self._store.verify_audit_log()
        return audit_service_pb2.VerifyAuditLogResponse(
            valid=result.valid,
            checked_count=result.checked,
            first_bad_sequence=result.first_bad_seq,
            problem=result.problem,
        )
