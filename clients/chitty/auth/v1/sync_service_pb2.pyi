import datetime

from chitty.auth.v1 import session_pb2 as _session_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceRegistration(_message.Message):
    __slots__ = ("device_id", "display_name", "client_type")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    display_name: str
    client_type: _session_pb2.ClientType
    def __init__(self, device_id: _Optional[str] = ..., display_name: _Optional[str] = ..., client_type: _Optional[_Union[_session_pb2.ClientType, str]] = ...) -> None: ...

class SyncSessionRequest(_message.Message):
    __slots__ = ("name", "device", "mcp_servers", "remove_device_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVERS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    device: DeviceRegistration
    mcp_servers: _containers.RepeatedScalarFieldContainer[str]
    remove_device_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., device: _Optional[_Union[DeviceRegistration, _Mapping]] = ..., mcp_servers: _Optional[_Iterable[str]] = ..., remove_device_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SyncSessionResponse(_message.Message):
    __slots__ = ("session", "created", "evicted_device_ids")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EVICTED_DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    created: bool
    evicted_device_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., created: _Optional[bool] = ..., evicted_device_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("chitty_id", "page_size", "page_token", "include_ended")
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENDED_FIELD_NUMBER: _ClassVar[int]
    chitty_id: str
    page_size: int
    page_token: str
    include_ended: bool
    def __init__(self, chitty_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_ended: _Optional[bool] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class RevokeAllSessionsRequest(_message.Message):
    __slots__ = ("chitty_id",)
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    chitty_id: str
    def __init__(self, chitty_id: _Optional[str] = ...) -> None: ...

class RevokeAllSessionsResponse(_message.Message):
    __slots__ = ("revoked_count",)
    REVOKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    revoked_count: int
    def __init__(self, revoked_count: _Optional[int] = ...) -> None: ...

class PutSessionStateRequest(_message.Message):
    __slots__ = ("name", "mcp_server", "data", "expected_version", "device_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    mcp_server: str
    data: bytes
    expected_version: int
    device_id: str
    def __init__(self, name: _Optional[str] = ..., mcp_server: _Optional[str] = ..., data: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., device_id: _Optional[str] = ...) -> None: ...

class PutSessionStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _session_pb2.SessionState
    def __init__(self, state: _Optional[_Union[_session_pb2.SessionState, _Mapping]] = ...) -> None: ...

class GetSessionStateRequest(_message.Message):
    __slots__ = ("name", "mcp_server")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    name: str
    mcp_server: str
    def __init__(self, name: _Optional[str] = ..., mcp_server: _Optional[str] = ...) -> None: ...

class GetSessionStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _session_pb2.SessionState
    def __init__(self, state: _Optional[_Union[_session_pb2.SessionState, _Mapping]] = ...) -> None: ...

class WatchSessionsRequest(_message.Message):
    __slots__ = ("cursor", "name")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    name: str
    def __init__(self, cursor: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class WatchSessionsResponse(_message.Message):
    __slots__ = ("event", "cursor", "heartbeat_time")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    event: _session_pb2.SessionEvent
    cursor: str
    heartbeat_time: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[_Union[_session_pb2.SessionEvent, _Mapping]] = ..., cursor: _Optional[str] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
