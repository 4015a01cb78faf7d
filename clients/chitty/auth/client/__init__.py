"""The ChittyAuth Python client: async and sync clients, typed errors, offline verification."""

from chitty.auth.client.aio import AsyncAuthClient
from chitty.auth.client.channel import ChannelSettings, RetryPolicy, TlsOptions
from chitty.auth.client.credentials import ClientCredentials, StaticToken
from chitty.auth.client.errors import (
    Aborted,
    AlreadyExists,
    ChittyAuthError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    NotFound,
    OutOfRange,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from chitty.auth.client.sync import AuthClient

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncAuthClient",
    "AuthClient",
    "ChannelSettings",
    "ChittyAuthError",
    "ClientCredentials",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "InvalidClient",
    "InvalidGrant",
    "InvalidScope",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "RateLimited",
    "RetryPolicy",
    "StaticToken",
    "TlsOptions",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]
