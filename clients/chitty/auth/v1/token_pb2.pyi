import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_USE_UNSPECIFIED: _ClassVar[TokenUse]
    TOKEN_USE_PORTAL: _ClassVar[TokenUse]
    TOKEN_USE_LINKED_APP: _ClassVar[TokenUse]
    TOKEN_USE_MCP_SERVER: _ClassVar[TokenUse]
    TOKEN_USE_SERVICE: _ClassVar[TokenUse]
    TOKEN_USE_EXCHANGE: _ClassVar[TokenUse]
    TOKEN_USE_USER: _ClassVar[TokenUse]

class CredentialKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_KIND_UNSPECIFIED: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_ACCESS_TOKEN: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_API_KEY: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_REFRESH_TOKEN: _ClassVar[CredentialKind]

class InactiveReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INACTIVE_REASON_UNSPECIFIED: _ClassVar[InactiveReason]
    INACTIVE_REASON_EXPIRED: _ClassVar[InactiveReason]
    INACTIVE_REASON_NOT_YET_VALID: _ClassVar[InactiveReason]
    INACTIVE_REASON_REVOKED: _ClassVar[InactiveReason]
    INACTIVE_REASON_BAD_SIGNATURE: _ClassVar[InactiveReason]
    INACTIVE_REASON_UNKNOWN_KEY: _ClassVar[InactiveReason]
    INACTIVE_REASON_WRONG_ISSUER: _ClassVar[InactiveReason]
    INACTIVE_REASON_WRONG_AUDIENCE: _ClassVar[InactiveReason]
    INACTIVE_REASON_INSUFFICIENT_SCOPE: _ClassVar[InactiveReason]
    INACTIVE_REASON_MALFORMED: _ClassVar[InactiveReason]
    INACTIVE_REASON_WRONG_TOKEN_USE: _ClassVar[InactiveReason]
    INACTIVE_REASON_UNKNOWN_CREDENTIAL: _ClassVar[InactiveReason]

class RevocationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_KIND_UNSPECIFIED: _ClassVar[RevocationKind]
    REVOCATION_KIND_TOKEN: _ClassVar[RevocationKind]
    REVOCATION_KIND_SESSION: _ClassVar[RevocationKind]
    REVOCATION_KIND_REFRESH_FAMILY: _ClassVar[RevocationKind]
    REVOCATION_KIND_API_KEY: _ClassVar[RevocationKind]
    REVOCATION_KIND_CLIENT: _ClassVar[RevocationKind]
TOKEN_USE_UNSPECIFIED: TokenUse
TOKEN_USE_PORTAL: TokenUse
TOKEN_USE_LINKED_APP: TokenUse
TOKEN_USE_MCP_SERVER: TokenUse
TOKEN_USE_SERVICE: TokenUse
TOKEN_USE_EXCHANGE: TokenUse
TOKEN_USE_USER: TokenUse
CREDENTIAL_KIND_UNSPECIFIED: CredentialKind
CREDENTIAL_KIND_ACCESS_TOKEN: CredentialKind
CREDENTIAL_KIND_API_KEY: CredentialKind
CREDENTIAL_KIND_REFRESH_TOKEN: CredentialKind
INACTIVE_REASON_UNSPECIFIED: InactiveReason
INACTIVE_REASON_EXPIRED: InactiveReason
INACTIVE_REASON_NOT_YET_VALID: InactiveReason
INACTIVE_REASON_REVOKED: InactiveReason
INACTIVE_REASON_BAD_SIGNATURE: InactiveReason
INACTIVE_REASON_UNKNOWN_KEY: InactiveReason
INACTIVE_REASON_WRONG_ISSUER: InactiveReason
INACTIVE_REASON_WRONG_AUDIENCE: InactiveReason
INACTIVE_REASON_INSUFFICIENT_SCOPE: InactiveReason
INACTIVE_REASON_MALFORMED: InactiveReason
INACTIVE_REASON_WRONG_TOKEN_USE: InactiveReason
INACTIVE_REASON_UNKNOWN_CREDENTIAL: InactiveReason
REVOCATION_KIND_UNSPECIFIED: RevocationKind
REVOCATION_KIND_TOKEN: RevocationKind
REVOCATION_KIND_SESSION: RevocationKind
REVOCATION_KIND_REFRESH_FAMILY: RevocationKind
REVOCATION_KIND_API_KEY: RevocationKind
REVOCATION_KIND_CLIENT: RevocationKind

class Actor(_message.Message):
    __slots__ = ("sub", "client_id")
    SUB_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    sub: str
    client_id: str
    def __init__(self, sub: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class TokenClaims(_message.Message):
    __slots__ = ("iss", "sub", "aud", "client_id", "scopes", "issue_time", "expire_time", "not_before_time", "jti", "sid", "token_use", "server_id", "capabilities", "act", "extra_claims", "key_id", "chitty_id")
    ISS_FIELD_NUMBER: _ClassVar[int]
    SUB_FIELD_NUMBER: _ClassVar[int]
    AUD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USE_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ACT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    iss: str
    sub: str
    aud: _containers.RepeatedScalarFieldContainer[str]
    client_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    issue_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    not_before_time: _timestamp_pb2.Timestamp
    jti: str
    sid: str
    token_use: TokenUse
    server_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    act: Actor
    extra_claims: _struct_pb2.Struct
    key_id: str
    chitty_id: str
    def __init__(self, iss: _Optional[str] = ..., sub: _Optional[str] = ..., aud: _Optional[_Iterable[str]] = ..., client_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_before_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jti: _Optional[str] = ..., sid: _Optional[str] = ..., token_use: _Optional[_Union[TokenUse, str]] = ..., server_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., act: _Optional[_Union[Actor, _Mapping]] = ..., extra_claims: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., key_id: _Optional[str] = ..., chitty_id: _Optional[str] = ...) -> None: ...

class Jwk(_message.Message):
    __slots__ = ("kty", "kid", "use", "alg", "crv", "x", "y", "n", "e", "retire_time")
    KTY_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    E_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    kty: str
    kid: str
    use: str
    alg: str
    crv: str
    x: str
    y: str
    n: str
    e: str
    retire_time: _timestamp_pb2.Timestamp
    def __init__(self, kty: _Optional[str] = ..., kid: _Optional[str] = ..., use: _Optional[str] = ..., alg: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., y: _Optional[str] = ..., n: _Optional[str] = ..., e: _Optional[str] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevocationEvent(_message.Message):
    __slots__ = ("cursor", "kind", "value", "expire_time", "revoke_time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    kind: RevocationKind
    value: str
    expire_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[str] = ..., kind: _Optional[_Union[RevocationKind, str]] = ..., value: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
