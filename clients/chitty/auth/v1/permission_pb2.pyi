import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PermissionGrant(_message.Message):
    __slots__ = ("grant_id", "grantor_chitty_id", "grantee_chitty_id", "permission", "resource", "create_time", "expire_time", "revoke_time")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTOR_CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    grantor_chitty_id: str
    grantee_chitty_id: str
    permission: str
    resource: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    def __init__(self, grant_id: _Optional[str] = ..., grantor_chitty_id: _Optional[str] = ..., grantee_chitty_id: _Optional[str] = ..., permission: _Optional[str] = ..., resource: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
