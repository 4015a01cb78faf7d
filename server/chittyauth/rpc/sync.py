"""SyncService: thin gRPC methods over ``domain.sessions.SessionService``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from chitty.auth.v1 import session_pb2, sync_service_pb2, sync_service_pb2_grpc
from chittyauth.domain.errors import InvalidRequest
from chittyauth.domain.sessions import (
    SESSION_NAME_PREFIX,
    DeviceInfo,
    DeviceRecord,
    SessionRecord,
    SessionService,
    StateRecord,
    session_name,
)
from chittyauth.domain.watch import Heartbeat, encode_cursor
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.context import current_call
from chittyauth.store.protocol import Change

Context = aio.ServicerContext[Any, Any]

_MAX_NAME_CHARS = 128

_CLIENT_TYPES: Mapping[int, str] = {
    session_pb2.CLIENT_TYPE_CLAUDE_DESKTOP: "claude_desktop",
    session_pb2.CLIENT_TYPE_WEB: "web",
    session_pb2.CLIENT_TYPE_MOBILE: "mobile",
}
_CLIENT_TYPE_ENUMS: Mapping[str, int] = {name: value for value, name in _CLIENT_TYPES.items()}
_STATUSES: Mapping[str, int] = {
    "active": session_pb2.SESSION_STATUS_ACTIVE,
    "revoked": session_pb2.SESSION_STATUS_REVOKED,
    "expired": session_pb2.SESSION_STATUS_EXPIRED,
}
_EVENT_TYPES: Mapping[str, int] = {
    "session.created": session_pb2.SESSION_EVENT_TYPE_CREATED,
    "session.device_added": session_pb2.SESSION_EVENT_TYPE_DEVICE_ADDED,
    "session.device_removed": session_pb2.SESSION_EVENT_TYPE_DEVICE_REMOVED,
    "session.server_attached": session_pb2.SESSION_EVENT_TYPE_SERVER_ATTACHED,
    "session.state_changed": session_pb2.SESSION_EVENT_TYPE_STATE_CHANGED,
    "session.revoked": session_pb2.SESSION_EVENT_TYPE_REVOKED,
    "session.expired": session_pb2.SESSION_EVENT_TYPE_EXPIRED,
}


class SyncServicer(sync_service_pb2_grpc.SyncServiceServicer):
    """A person's sessions across devices and MCP servers."""

    def __init__(self, sessions: SessionService, resolver: PrincipalResolver) -> None:
        self.sessions = sessions
        self.resolver = resolver

    async def SyncSession(
        self, request: sync_service_pb2.SyncSessionRequest, context: Context
    ) -> sync_service_pb2.SyncSessionResponse:
        principal = caller(self.resolver)
        device = None
        if request.HasField("device"):
            registration = request.device
            device = DeviceInfo(
                device_id=registration.device_id,
                display_name=registration.display_name,
                client_type=_CLIENT_TYPES.get(registration.client_type, ""),
            )
        result = await self.sessions.sync(
            principal,
            session_id=_session_id(request.name, optional=True),
            device=device,
            mcp_servers=list(request.mcp_servers),
            remove_device_ids=list(request.remove_device_ids),
            request_id=current_call().request_id,
        )
        return sync_service_pb2.SyncSessionResponse(
            session=self._session(result.session),
            created=result.created,
            evicted_device_ids=result.evicted_device_ids,
        )

    async def GetSession(
        self, request: sync_service_pb2.GetSessionRequest, context: Context
    ) -> sync_service_pb2.GetSessionResponse:
        principal = caller(self.resolver)
        record = await self.sessions.get(
            principal, _session_id(request.name), request_id=current_call().request_id
        )
        return sync_service_pb2.GetSessionResponse(session=self._session(record))

    async def ListSessions(
        self, request: sync_service_pb2.ListSessionsRequest, context: Context
    ) -> sync_service_pb2.ListSessionsResponse:
        principal = caller(self.resolver)
        page = await self.sessions.list_sessions(
            principal,
            chitty_id=request.chitty_id,
            page_size=request.page_size,
            page_token=request.page_token,
            include_ended=request.include_ended,
            request_id=current_call().request_id,
        )
        return sync_service_pb2.ListSessionsResponse(
            sessions=[self._session(record) for record in page.sessions],
            next_page_token=page.next_page_token,
        )

    async def RevokeSession(
        self, request: sync_service_pb2.RevokeSessionRequest, context: Context
    ) -> sync_service_pb2.RevokeSessionResponse:
        principal = caller(self.resolver)
        record = await self.sessions.revoke(
            principal, _session_id(request.name), request_id=current_call().request_id
        )
        return sync_service_pb2.RevokeSessionResponse(session=self._session(record))

    async def RevokeAllSessions(
        self, request: sync_service_pb2.RevokeAllSessionsRequest, context: Context
    ) -> sync_service_pb2.RevokeAllSessionsResponse:
        principal = caller(self.resolver)
        count = await self.sessions.revoke_all(
            principal, chitty_id=request.chitty_id, request_id=current_call().request_id
        )
        return sync_service_pb2.RevokeAllSessionsResponse(revoked_count=count)

    async def PutSessionState(
        self, request: sync_service_pb2.PutSessionStateRequest, context: Context
    ) -> sync_service_pb2.PutSessionStateResponse:
        principal = caller(self.resolver)
        state = await self.sessions.put_state(
            principal,
            session_id=_session_id(request.name),
            mcp_server=request.mcp_server,
            data=request.data,
            expected_version=request.expected_version,
            device_id=request.device_id,
            request_id=current_call().request_id,
        )
        return sync_service_pb2.PutSessionStateResponse(state=_state(state))

    async def GetSessionState(
        self, request: sync_service_pb2.GetSessionStateRequest, context: Context
    ) -> sync_service_pb2.GetSessionStateResponse:
        principal = caller(self.resolver)
        state = await self.sessions.get_state(
            principal,
            session_id=_session_id(request.name),
            mcp_server=request.mcp_server,
            request_id=current_call().request_id,
        )
        return sync_service_pb2.GetSessionStateResponse(state=_state(state))

    async def WatchSessions(
        self, request: sync_service_pb2.WatchSessionsRequest, context: Context
    ) -> AsyncIterator[sync_service_pb2.WatchSessionsResponse]:
        principal = caller(self.resolver)
        items = self.sessions.watch(
            principal,
            session_id=_session_id(request.name, optional=True),
            cursor=request.cursor,
            request_id=current_call().request_id,
        )
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Heartbeat):
                    yield sync_service_pb2.WatchSessionsResponse(
                        cursor=encode_cursor(item.position), heartbeat_time=_timestamp(item.time)
                    )
                else:
                    yield sync_service_pb2.WatchSessionsResponse(event=_event(item))

    def _session(self, record: SessionRecord) -> session_pb2.Session:
        session = session_pb2.Session(
            name=session_name(record.session_id),
            session_id=record.session_id,
            chitty_id=record.chitty_id,
            devices=[_device(device) for device in record.devices],
            mcp_servers=record.mcp_servers,
            status=_STATUSES[record.status],  # type: ignore[arg-type]
            create_time=_timestamp(record.created_at),
            update_time=_timestamp(record.updated_at),
            last_activity_time=_timestamp(record.last_activity_at),
            expire_time=_timestamp(record.expires_at),
        )
        if record.is_active:
            idle_end = record.last_activity_at + self.sessions.policy.idle_timeout_s
            session.idle_expire_time.CopyFrom(_timestamp(min(idle_end, record.expires_at)))
        if record.ended_at is not None:
            session.end_time.CopyFrom(_timestamp(record.ended_at))
        return session


def _session_id(name: str, *, optional: bool = False) -> str:
    """The id in ``sessions/{id}`` (the domain checks the id itself)."""
    if not name and optional:
        return ""
    if len(name) > _MAX_NAME_CHARS or not name.startswith(SESSION_NAME_PREFIX):
        raise InvalidRequest("name must be sessions/{session_id}", reason="INVALID_SESSION_NAME")
    return name[len(SESSION_NAME_PREFIX) :]


def _device(device: DeviceRecord) -> session_pb2.Device:
    return session_pb2.Device(
        device_id=device.device_id,
        display_name=device.display_name,
        client_type=_CLIENT_TYPE_ENUMS.get(device.client_type, 0),  # type: ignore[arg-type]
        add_time=_timestamp(device.added_at),
        last_seen_time=_timestamp(device.last_seen_at),
    )


def _state(state: StateRecord) -> session_pb2.SessionState:
    message = session_pb2.SessionState(
        name=session_name(state.session_id),
        mcp_server=state.mcp_server,
        data=state.data,
        version=state.version,
        updated_by_device_id=state.updated_by_device_id,
    )
    if state.updated_at is not None:
        message.update_time.CopyFrom(_timestamp(state.updated_at))
    return message


def _event(change: Change) -> session_pb2.SessionEvent:
    payload = change.payload
    event = session_pb2.SessionEvent(
        cursor=encode_cursor(change.seq),
        type=_EVENT_TYPES.get(change.kind, 0),  # type: ignore[arg-type]
        name=session_name(change.key),
        chitty_id=str(payload.get("chitty_id", "")),
        mcp_server=str(payload.get("mcp_server", "")),
        state_version=int(payload.get("state_version", 0)),
        event_time=_timestamp(change.created_at),
    )
    device = payload.get("device")
    if isinstance(device, Mapping):
        event.device.CopyFrom(
            _device(
                DeviceRecord(
                    device_id=str(device.get("device_id", "")),
                    display_name=str(device.get("display_name", "")),
                    client_type=str(device.get("client_type", "")),
                    added_at=float(device.get("added_at", 0.0)),
                    last_seen_at=float(device.get("last_seen_at", 0.0)),
                )
            )
        )
    return event


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1_000_000_000))
    return stamp
