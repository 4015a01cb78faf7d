import datetime

from chitty.auth.v1 import account_pb2 as _account_pb2
from chitty.auth.v1 import session_pb2 as _session_pb2
from chitty.auth.v1 import token_pb2 as _token_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PortalCredential(_message.Message):
    __slots__ = ("assertion", "email")
    ASSERTION_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    assertion: str
    email: str
    def __init__(self, assertion: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class PasswordCredential(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class ApiKeyCredential(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class ClientCredentials(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class McpServerCredential(_message.Message):
    __slots__ = ("client_id", "client_secret", "chitty_id", "capabilities")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    chitty_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., chitty_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class DeviceHint(_message.Message):
    __slots__ = ("device_id", "display_name", "client_type")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    display_name: str
    client_type: _session_pb2.ClientType
    def __init__(self, device_id: _Optional[str] = ..., display_name: _Optional[str] = ..., client_type: _Optional[_Union[_session_pb2.ClientType, str]] = ...) -> None: ...

class AuthenticateRequest(_message.Message):
    __slots__ = ("portal", "password", "api_key", "client_credentials", "mcp_server", "scopes", "resources", "device")
    PORTAL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    portal: PortalCredential
    password: PasswordCredential
    api_key: ApiKeyCredential
    client_credentials: ClientCredentials
    mcp_server: McpServerCredential
    scopes: _containers.RepeatedScalarFieldContainer[str]
    resources: _containers.RepeatedScalarFieldContainer[str]
    device: DeviceHint
    def __init__(self, portal: _Optional[_Union[PortalCredential, _Mapping]] = ..., password: _Optional[_Union[PasswordCredential, _Mapping]] = ..., api_key: _Optional[_Union[ApiKeyCredential, _Mapping]] = ..., client_credentials: _Optional[_Union[ClientCredentials, _Mapping]] = ..., mcp_server: _Optional[_Union[McpServerCredential, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., resources: _Optional[_Iterable[str]] = ..., device: _Optional[_Union[DeviceHint, _Mapping]] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expire_time", "scopes", "chitty_id", "session_id", "token_use", "portal_url", "jti")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USE_FIELD_NUMBER: _ClassVar[int]
    PORTAL_URL_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expire_time: _timestamp_pb2.Timestamp
    scopes: _containers.RepeatedScalarFieldContainer[str]
    chitty_id: str
    session_id: str
    token_use: _token_pb2.TokenUse
    portal_url: str
    jti: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., chitty_id: _Optional[str] = ..., session_id: _Optional[str] = ..., token_use: _Optional[_Union[_token_pb2.TokenUse, str]] = ..., portal_url: _Optional[str] = ..., jti: _Optional[str] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("response_type", "client_id", "redirect_uri", "scopes", "state", "code_challenge", "code_challenge_method", "resources")
    RESPONSE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CODE_CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    CODE_CHALLENGE_METHOD_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    response_type: str
    client_id: str
    redirect_uri: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    state: str
    code_challenge: str
    code_challenge_method: str
    resources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, response_type: _Optional[str] = ..., client_id: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ..., code_challenge: _Optional[str] = ..., code_challenge_method: _Optional[str] = ..., resources: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("code", "redirect_url", "state", "iss", "expire_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ISS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    redirect_url: str
    state: str
    iss: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., redirect_url: _Optional[str] = ..., state: _Optional[str] = ..., iss: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuthorizationCodeGrant(_message.Message):
    __slots__ = ("code", "redirect_uri", "code_verifier")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    CODE_VERIFIER_FIELD_NUMBER: _ClassVar[int]
    code: str
    redirect_uri: str
    code_verifier: str
    def __init__(self, code: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., code_verifier: _Optional[str] = ...) -> None: ...

class RefreshTokenGrant(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class ClientCredentialsGrant(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenExchangeGrant(_message.Message):
    __slots__ = ("subject_token", "subject_token_type", "actor_token", "actor_token_type", "audiences", "requested_token_type")
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    subject_token: str
    subject_token_type: str
    actor_token: str
    actor_token_type: str
    audiences: _containers.RepeatedScalarFieldContainer[str]
    requested_token_type: str
    def __init__(self, subject_token: _Optional[str] = ..., subject_token_type: _Optional[str] = ..., actor_token: _Optional[str] = ..., actor_token_type: _Optional[str] = ..., audiences: _Optional[_Iterable[str]] = ..., requested_token_type: _Optional[str] = ...) -> None: ...

class ExchangeRequest(_message.Message):
    __slots__ = ("authorization_code", "refresh_token", "client_credentials", "token_exchange", "client_id", "client_secret", "scopes", "resources")
    AUTHORIZATION_CODE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    authorization_code: AuthorizationCodeGrant
    refresh_token: RefreshTokenGrant
    client_credentials: ClientCredentialsGrant
    token_exchange: TokenExchangeGrant
    client_id: str
    client_secret: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    resources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authorization_code: _Optional[_Union[AuthorizationCodeGrant, _Mapping]] = ..., refresh_token: _Optional[_Union[RefreshTokenGrant, _Mapping]] = ..., client_credentials: _Optional[_Union[ClientCredentialsGrant, _Mapping]] = ..., token_exchange: _Optional[_Union[TokenExchangeGrant, _Mapping]] = ..., client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., resources: _Optional[_Iterable[str]] = ...) -> None: ...

class ExchangeResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expire_time", "refresh_token", "scopes", "issued_token_type", "jti")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expire_time: _timestamp_pb2.Timestamp
    refresh_token: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    issued_token_type: str
    jti: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., issued_token_type: _Optional[str] = ..., jti: _Optional[str] = ...) -> None: ...

class ValidateRequest(_message.Message):
    __slots__ = ("token", "audience", "required_scopes", "token_use")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USE_FIELD_NUMBER: _ClassVar[int]
    token: str
    audience: str
    required_scopes: _containers.RepeatedScalarFieldContainer[str]
    token_use: _token_pb2.TokenUse
    def __init__(self, token: _Optional[str] = ..., audience: _Optional[str] = ..., required_scopes: _Optional[_Iterable[str]] = ..., token_use: _Optional[_Union[_token_pb2.TokenUse, str]] = ...) -> None: ...

class ValidateResponse(_message.Message):
    __slots__ = ("active", "inactive_reason", "claims", "credential_kind")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_REASON_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_KIND_FIELD_NUMBER: _ClassVar[int]
    active: bool
    inactive_reason: _token_pb2.InactiveReason
    claims: _token_pb2.TokenClaims
    credential_kind: _token_pb2.CredentialKind
    def __init__(self, active: _Optional[bool] = ..., inactive_reason: _Optional[_Union[_token_pb2.InactiveReason, str]] = ..., claims: _Optional[_Union[_token_pb2.TokenClaims, _Mapping]] = ..., credential_kind: _Optional[_Union[_token_pb2.CredentialKind, str]] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("token", "token_type_hint")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_HINT_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_type_hint: str
    def __init__(self, token: _Optional[str] = ..., token_type_hint: _Optional[str] = ...) -> None: ...

class RevokeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_token_pb2.Jwk]
    def __init__(self, keys: _Optional[_Iterable[_Union[_token_pb2.Jwk, _Mapping]]] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("cursor",)
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    def __init__(self, cursor: _Optional[str] = ...) -> None: ...

class WatchRevocationsResponse(_message.Message):
    __slots__ = ("event", "cursor", "heartbeat_time")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    event: _token_pb2.RevocationEvent
    cursor: str
    heartbeat_time: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[_Union[_token_pb2.RevocationEvent, _Mapping]] = ..., cursor: _Optional[str] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterAccountRequest(_message.Message):
    __slots__ = ("email", "password", "display_name", "metadata")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    display_name: str
    metadata: _struct_pb2.Struct
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ..., display_name: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RegisterAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _account_pb2.Account
    def __init__(self, account: _Optional[_Union[_account_pb2.Account, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("chitty_id", "ttl", "extra_claims", "scopes", "audiences", "token_use")
    CHITTY_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USE_FIELD_NUMBER: _ClassVar[int]
    chitty_id: str
    ttl: _duration_pb2.Duration
    extra_claims: _struct_pb2.Struct
    scopes: _containers.RepeatedScalarFieldContainer[str]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    token_use: _token_pb2.TokenUse
    def __init__(self, chitty_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., extra_claims: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., audiences: _Optional[_Iterable[str]] = ..., token_use: _Optional[_Union[_token_pb2.TokenUse, str]] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expire_time", "jti")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expire_time: _timestamp_pb2.Timestamp
    jti: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jti: _Optional[str] = ...) -> None: ...
