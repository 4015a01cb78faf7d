import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ALGORITHM_UNSPECIFIED: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_ES256: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_EDDSA: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_RS256: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_HS256: _ClassVar[KeyAlgorithm]

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_NEXT: _ClassVar[KeyState]
    KEY_STATE_ACTIVE: _ClassVar[KeyState]
    KEY_STATE_RETIRED: _ClassVar[KeyState]
KEY_ALGORITHM_UNSPECIFIED: KeyAlgorithm
KEY_ALGORITHM_ES256: KeyAlgorithm
KEY_ALGORITHM_EDDSA: KeyAlgorithm
KEY_ALGORITHM_RS256: KeyAlgorithm
KEY_ALGORITHM_HS256: KeyAlgorithm
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_NEXT: KeyState
KEY_STATE_ACTIVE: KeyState
KEY_STATE_RETIRED: KeyState

class SigningKey(_message.Message):
    __slots__ = ("kid", "algorithm", "state", "create_time", "activate_time", "retire_time", "delete_time")
    KID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIME_FIELD_NUMBER: _ClassVar[int]
    kid: str
    algorithm: KeyAlgorithm
    state: KeyState
    create_time: _timestamp_pb2.Timestamp
    activate_time: _timestamp_pb2.Timestamp
    retire_time: _timestamp_pb2.Timestamp
    delete_time: _timestamp_pb2.Timestamp
    def __init__(self, kid: _Optional[str] = ..., algorithm: _Optional[_Union[KeyAlgorithm, str]] = ..., state: _Optional[_Union[KeyState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
