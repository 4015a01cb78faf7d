import datetime

from chitty.auth.v1 import permission_pb2 as _permission_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GrantPermissionRequest(_message.Message):
    __slots__ = ("grantee_chitty_id", "permission", "resource", "expire_time", "grantor_chitty_id")
    GRANTEE_CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANTOR_CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    grantee_chitty_id: str
    permission: str
    resource: str
    expire_time: _timestamp_pb2.Timestamp
    grantor_chitty_id: str
    def __init__(self, grantee_chitty_id: _Optional[str] = ..., permission: _Optional[str] = ..., resource: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grantor_chitty_id: _Optional[str] = ...) -> None: ...

class GrantPermissionResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: _permission_pb2.PermissionGrant
    def __init__(self, grant: _Optional[_Union[_permission_pb2.PermissionGrant, _Mapping]] = ...) -> None: ...

class CheckPermissionRequest(_message.Message):
    __slots__ = ("chitty_id", "permission", "resource")
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    chitty_id: str
    permission: str
    resource: str
    def __init__(self, chitty_id: _Optional[str] = ..., permission: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class CheckPermissionResponse(_message.Message):
    __slots__ = ("allowed", "grant")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    grant: _permission_pb2.PermissionGrant
    def __init__(self, allowed: _Optional[bool] = ..., grant: _Optional[_Union[_permission_pb2.PermissionGrant, _Mapping]] = ...) -> None: ...

class ListPermissionsRequest(_message.Message):
    __slots__ = ("chitty_id", "page_size", "page_token", "include_inactive")
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    chitty_id: str
    page_size: int
    page_token: str
    include_inactive: bool
    def __init__(self, chitty_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_inactive: _Optional[bool] = ...) -> None: ...

class ListPermissionsResponse(_message.Message):
    __slots__ = ("grants", "next_page_token")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[_permission_pb2.PermissionGrant]
    next_page_token: str
    def __init__(self, grants: _Optional[_Iterable[_Union[_permission_pb2.PermissionGrant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokePermissionRequest(_message.Message):
    __slots__ = ("grant_id",)
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    def __init__(self, grant_id: _Optional[str] = ...) -> None: ...

class RevokePermissionResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: _permission_pb2.PermissionGrant
    def __init__(self, grant: _Optional[_Union[_permission_pb2.PermissionGrant, _Mapping]] = ...) -> None: ...
