import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_KIND_UNSPECIFIED: _ClassVar[ClientKind]
    CLIENT_KIND_LINKED_APP: _ClassVar[ClientKind]
    CLIENT_KIND_MCP_SERVER: _ClassVar[ClientKind]
    CLIENT_KIND_SERVICE: _ClassVar[ClientKind]

class TokenEndpointAuthMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_ENDPOINT_AUTH_METHOD_UNSPECIFIED: _ClassVar[TokenEndpointAuthMethod]
    TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC: _ClassVar[TokenEndpointAuthMethod]
    TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST: _ClassVar[TokenEndpointAuthMethod]
    TOKEN_ENDPOINT_AUTH_METHOD_NONE: _ClassVar[TokenEndpointAuthMethod]

class GrantType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_TYPE_UNSPECIFIED: _ClassVar[GrantType]
    GRANT_TYPE_AUTHORIZATION_CODE: _ClassVar[GrantType]
    GRANT_TYPE_REFRESH_TOKEN: _ClassVar[GrantType]
    GRANT_TYPE_CLIENT_CREDENTIALS: _ClassVar[GrantType]
    GRANT_TYPE_TOKEN_EXCHANGE: _ClassVar[GrantType]
CLIENT_KIND_UNSPECIFIED: ClientKind
CLIENT_KIND_LINKED_APP: ClientKind
CLIENT_KIND_MCP_SERVER: ClientKind
CLIENT_KIND_SERVICE: ClientKind
TOKEN_ENDPOINT_AUTH_METHOD_UNSPECIFIED: TokenEndpointAuthMethod
TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC: TokenEndpointAuthMethod
TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST: TokenEndpointAuthMethod
TOKEN_ENDPOINT_AUTH_METHOD_NONE: TokenEndpointAuthMethod
GRANT_TYPE_UNSPECIFIED: GrantType
GRANT_TYPE_AUTHORIZATION_CODE: GrantType
GRANT_TYPE_REFRESH_TOKEN: GrantType
GRANT_TYPE_CLIENT_CREDENTIALS: GrantType
GRANT_TYPE_TOKEN_EXCHANGE: GrantType

class Client(_message.Message):
    __slots__ = ("client_id", "display_name", "kind", "confidential", "redirect_uris", "allowed_scopes", "grant_types", "token_endpoint_auth_method", "server_id", "capabilities", "secret_hint", "create_time", "update_time", "metadata_document_uri", "exchange_audiences", "exchange_may_impersonate")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONFIDENTIAL_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URIS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    GRANT_TYPES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_DOCUMENT_URI_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_MAY_IMPERSONATE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    display_name: str
    kind: ClientKind
    confidential: bool
    redirect_uris: _containers.RepeatedScalarFieldContainer[str]
    allowed_scopes: _containers.RepeatedScalarFieldContainer[str]
    grant_types: _containers.RepeatedScalarFieldContainer[GrantType]
    token_endpoint_auth_method: TokenEndpointAuthMethod
    server_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    secret_hint: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    metadata_document_uri: str
    exchange_audiences: _containers.RepeatedScalarFieldContainer[str]
    exchange_may_impersonate: bool
    def __init__(self, client_id: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[_Union[ClientKind, str]] = ..., confidential: _Optional[bool] = ..., redirect_uris: _Optional[_Iterable[str]] = ..., allowed_scopes: _Optional[_Iterable[str]] = ..., grant_types: _Optional[_Iterable[_Union[GrantType, str]]] = ..., token_endpoint_auth_method: _Optional[_Union[TokenEndpointAuthMethod, str]] = ..., server_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., secret_hint: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata_document_uri: _Optional[str] = ..., exchange_audiences: _Optional[_Iterable[str]] = ..., exchange_may_impersonate: _Optional[bool] = ...) -> None: ...
