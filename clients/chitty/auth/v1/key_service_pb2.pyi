from chitty.auth.v1 import signing_key_pb2 as _signing_key_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListSigningKeysRequest(_message.Message):
    __slots__ = ("algorithm",)
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    algorithm: _signing_key_pb2.KeyAlgorithm
    def __init__(self, algorithm: _Optional[_Union[_signing_key_pb2.KeyAlgorithm, str]] = ...) -> None: ...

class ListSigningKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_signing_key_pb2.SigningKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[_signing_key_pb2.SigningKey, _Mapping]]] = ...) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ("algorithm",)
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    algorithm: _signing_key_pb2.KeyAlgorithm
    def __init__(self, algorithm: _Optional[_Union[_signing_key_pb2.KeyAlgorithm, str]] = ...) -> None: ...

class RotateSigningKeyResponse(_message.Message):
    __slots__ = ("active_key", "next_key", "retired_key")
    ACTIVE_KEY_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    RETIRED_KEY_FIELD_NUMBER: _ClassVar[int]
    active_key: _signing_key_pb2.SigningKey
    next_key: _signing_key_pb2.SigningKey
    retired_key: _signing_key_pb2.SigningKey
    def __init__(self, active_key: _Optional[_Union[_signing_key_pb2.SigningKey, _Mapping]] = ..., next_key: _Optional[_Union[_signing_key_pb2.SigningKey, _Mapping]] = ..., retired_key: _Optional[_Union[_signing_key_pb2.SigningKey, _Mapping]] = ...) -> None: ...
