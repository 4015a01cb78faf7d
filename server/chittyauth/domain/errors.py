"""Domain errors.

Every refusal the domain makes is one of these. Each class carries three names for the same
fact: the OAuth error code (RFC 6749 §5.2 and friends) for the HTTP OAuth endpoints, the gRPC
status code name for the gRPC surface, and a stable ErrorInfo reason. ``rpc/errors.py`` and
``http/errors.py`` are the only places that turn them into wire errors.
"""

from __future__ import annotations

from collections.abc import Mapping

ERROR_DOMAIN = "auth.chitty.cc"


class DomainError(Exception):
    """Base of every refusal. ``message`` is safe to show to the caller."""

    grpc_code: str = "INVALID_ARGUMENT"
    oauth_error: str = "invalid_request"
    reason: str = "INVALID_ARGUMENT"
    http_status: int = 400

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after


class InvalidRequest(DomainError):
    """A parameter is missing, malformed or repeated (RFC 6749 §5.2 ``invalid_request``)."""

    reason = "INVALID_REQUEST"


class InvalidClient(DomainError):
    """Client authentication failed (RFC 6749 §5.2 ``invalid_client``)."""

    grpc_code = "UNAUTHENTICATED"
    oauth_error = "invalid_client"
    reason = "INVALID_CLIENT"
    http_status = 401


class InvalidGrant(DomainError):
    """The grant (code, refresh token, credentials) is invalid, expired or revoked (§5.2)."""

    oauth_error = "invalid_grant"
    reason = "INVALID_GRANT"


class UnauthorizedClient(DomainError):
    """The client may not use this grant type (RFC 6749 §5.2 ``unauthorized_client``)."""

    grpc_code = "PERMISSION_DENIED"
    oauth_error = "unauthorized_client"
    reason = "UNAUTHORIZED_CLIENT"


class UnsupportedGrantType(DomainError):
    """The grant type is not supported (RFC 6749 §5.2 ``unsupported_grant_type``)."""

    oauth_error = "unsupported_grant_type"
    reason = "UNSUPPORTED_GRANT_TYPE"


class InvalidScope(DomainError):
    """A requested scope is unknown or beyond what may be granted (RFC 6749 §5.2)."""

    oauth_error = "invalid_scope"
    reason = "INVALID_SCOPE"


class InvalidTarget(DomainError):
    """The resource indicator is not acceptable (RFC 8707 §2 ``invalid_target``)."""

    oauth_error = "invalid_target"
    reason = "INVALID_TARGET"


class Unauthenticated(DomainError):
    """The caller's credential is missing or bad; never says which part was wrong."""

    grpc_code = "UNAUTHENTICATED"
    oauth_error = "invalid_token"
    reason = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(DomainError):
    """The caller is known but may not do this (RFC 6750 §3.1 ``insufficient_scope``)."""

    grpc_code = "PERMISSION_DENIED"
    oauth_error = "access_denied"
    reason = "PERMISSION_DENIED"
    http_status = 403


class ScopeNotGrantable(PermissionDenied):
    """A consent or delegation asks for a scope its grantor may not pass on (RFC 6749 §4.1.2.1
    ``invalid_scope`` on the redirect; PERMISSION_DENIED on gRPC)."""

    oauth_error = "invalid_scope"
    reason = "SCOPE_NOT_HELD"


class NotFound(DomainError):
    """The named thing does not exist (or its existence is private)."""

    grpc_code = "NOT_FOUND"
    reason = "NOT_FOUND"
    http_status = 404


class AlreadyExists(DomainError):
    """The thing to create exists already."""

    grpc_code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this."""

    grpc_code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A compare-and-set lost: the caller should re-read, merge and retry."""

    grpc_code = "ABORTED"
    reason = "VERSION_CONFLICT"
    http_status = 409


class OutOfRange(DomainError):
    """A cursor or page token points outside what is kept."""

    grpc_code = "OUT_OF_RANGE"
    reason = "OUT_OF_RANGE"


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` says when to come back (seconds)."""

    grpc_code = "RESOURCE_EXHAUSTED"
    oauth_error = "slow_down"
    reason = "RATE_LIMITED"
    http_status = 429


class Unavailable(DomainError):
    """A dependency (the ChittyID authority, the store) cannot be reached: fail closed."""

    grpc_code = "UNAVAILABLE"
    oauth_error = "temporarily_unavailable"
    reason = "UNAVAILABLE"
    http_status = 503


class StoreUnavailable(Unavailable):
    """The store cannot take the operation now: its write lock is held by another process
    (reason ``STORE_BUSY``) or the disk failed (``STORE_UNAVAILABLE``). Retry later."""

    reason = "STORE_UNAVAILABLE"


class StoreFull(DomainError):
    """The disk under the store is full: nothing new can be written until space is freed."""

    grpc_code = "RESOURCE_EXHAUSTED"
    oauth_error = "temporarily_unavailable"
    reason = "STORE_FULL"
    # Not 429: the caller did nothing wrong and slowing down alone does not help.
    http_status = 503


class NotImplementedYet(DomainError):
    """The RPC exists in the contract but its behaviour is not built yet."""

    grpc_code = "UNIMPLEMENTED"
    oauth_error = "unsupported_grant_type"
    reason = "UNIMPLEMENTED"
    http_status = 501
