import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_TYPE_UNSPECIFIED: _ClassVar[ClientType]
    CLIENT_TYPE_CLAUDE_DESKTOP: _ClassVar[ClientType]
    CLIENT_TYPE_WEB: _ClassVar[ClientType]
    CLIENT_TYPE_MOBILE: _ClassVar[ClientType]

class SessionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATUS_UNSPECIFIED: _ClassVar[SessionStatus]
    SESSION_STATUS_ACTIVE: _ClassVar[SessionStatus]
    SESSION_STATUS_REVOKED: _ClassVar[SessionStatus]
    SESSION_STATUS_EXPIRED: _ClassVar[SessionStatus]

class SessionEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_EVENT_TYPE_UNSPECIFIED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_CREATED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_DEVICE_ADDED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_DEVICE_REMOVED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_SERVER_ATTACHED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_STATE_CHANGED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_REVOKED: _ClassVar[SessionEventType]
    SESSION_EVENT_TYPE_EXPIRED: _ClassVar[SessionEventType]
CLIENT_TYPE_UNSPECIFIED: ClientType
CLIENT_TYPE_CLAUDE_DESKTOP: ClientType
CLIENT_TYPE_WEB: ClientType
CLIENT_TYPE_MOBILE: ClientType
SESSION_STATUS_UNSPECIFIED: SessionStatus
SESSION_STATUS_ACTIVE: SessionStatus
SESSION_STATUS_REVOKED: SessionStatus
SESSION_STATUS_EXPIRED: SessionStatus
SESSION_EVENT_TYPE_UNSPECIFIED: SessionEventType
SESSION_EVENT_TYPE_CREATED: SessionEventType
SESSION_EVENT_TYPE_DEVICE_ADDED: SessionEventType
SESSION_EVENT_TYPE_DEVICE_REMOVED: SessionEventType
SESSION_EVENT_TYPE_SERVER_ATTACHED: SessionEventType
SESSION_EVENT_TYPE_STATE_CHANGED: SessionEventType
SESSION_EVENT_TYPE_REVOKED: SessionEventType
SESSION_EVENT_TYPE_EXPIRED: SessionEventType

class Device(_message.Message):
    __slots__ = ("device_id", "display_name", "client_type", "add_time", "last_seen_time")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ADD_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    display_name: str
    client_type: ClientType
    add_time: _timestamp_pb2.Timestamp
    last_seen_time: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., display_name: _Optional[str] = ..., client_type: _Optional[_Union[ClientType, str]] = ..., add_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("name", "session_id", "chitty_id", "devices", "mcp_servers", "status", "create_time", "update_time", "last_activity_time", "idle_expire_time", "expire_time", "end_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    IDLE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    session_id: str
    chitty_id: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    mcp_servers: _containers.RepeatedScalarFieldContainer[str]
    status: SessionStatus
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_activity_time: _timestamp_pb2.Timestamp
    idle_expire_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., session_id: _Optional[str] = ..., chitty_id: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., mcp_servers: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[SessionStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idle_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SessionState(_message.Message):
    __slots__ = ("name", "mcp_server", "data", "version", "update_time", "updated_by_device_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    mcp_server: str
    data: bytes
    version: int
    update_time: _timestamp_pb2.Timestamp
    updated_by_device_id: str
    def __init__(self, name: _Optional[str] = ..., mcp_server: _Optional[str] = ..., data: _Optional[bytes] = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by_device_id: _Optional[str] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("cursor", "type", "name", "chitty_id", "device", "mcp_server", "state_version", "event_time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    type: SessionEventType
    name: str
    chitty_id: str
    device: Device
    mcp_server: str
    state_version: int
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[str] = ..., type: _Optional[_Union[SessionEventType, str]] = ..., name: _Optional[str] = ..., chitty_id: _Optional[str] = ..., device: _Optional[_Union[Device, _Mapping]] = ..., mcp_server: _Optional[str] = ..., state_version: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
