"""Typed exceptions for refused calls, decoded from the google.rpc.Status a server sends.

Every ChittyAuth refusal carries a gRPC status code and, in the ``grpc-status-details-bin``
trailer, a ``google.rpc.Status`` with an ``ErrorInfo`` (a stable reason such as
``INVALID_GRANT``) and sometimes a ``RetryInfo``. ``error_from_rpc`` turns that into the most
specific class below, so callers can write ``except InvalidGrant:`` rather than compare
strings.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "auth.chitty.cc"


class ChittyAuthError(Exception):
    """A call ChittyAuth refused (or could not answer).

    Attributes:
        code: the gRPC status code.
        reason: the ErrorInfo reason (UPPER_SNAKE), or the code's name when none was sent.
        message: the server's message.
        metadata: the ErrorInfo metadata.
        retry_after: seconds to wait before retrying, from RetryInfo, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code.name
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


class InvalidArgument(ChittyAuthError):
    """The request was malformed (INVALID_ARGUMENT)."""


class InvalidGrant(InvalidArgument):
    """RFC 6749 §5.2 invalid_grant: the code, refresh token or subject token is not good."""


class InvalidScope(InvalidArgument):
    """RFC 6749 §5.2 invalid_scope: a requested scope is unknown or not allowed."""


class Unauthenticated(ChittyAuthError):
    """The credential was missing, invalid, expired or revoked (UNAUTHENTICATED)."""


class InvalidClient(Unauthenticated):
    """RFC 6749 §5.2 invalid_client: unknown client or wrong secret."""


class PermissionDenied(ChittyAuthError):
    """The caller is authenticated but not allowed (PERMISSION_DENIED)."""


class NotFound(ChittyAuthError):
    """The named resource does not exist (NOT_FOUND)."""


class AlreadyExists(ChittyAuthError):
    """The resource already exists (ALREADY_EXISTS)."""


class FailedPrecondition(ChittyAuthError):
    """The system is not in a state that allows the call (FAILED_PRECONDITION)."""


class Aborted(ChittyAuthError):
    """A compare-and-set lost (ABORTED): re-read, merge and retry.

    Attributes:
        current_version: the version the server holds now, when it said so.
    """

    @property
    def current_version(self) -> int | None:
        raw = self.metadata.get("current_version", "")
        return int(raw) if raw.isdigit() else None


class OutOfRange(ChittyAuthError):
    """A cursor or page is outside what the server keeps (OUT_OF_RANGE)."""


class RateLimited(ChittyAuthError):
    """Too many calls (RESOURCE_EXHAUSTED); ``retry_after`` says when to try again."""


class Unavailable(ChittyAuthError):
    """The server (or a dependency such as the ChittyID authority) is unavailable."""


class DeadlineExceeded(ChittyAuthError):
    """The call did not finish before its deadline."""


class Unimplemented(ChittyAuthError):
    """The server does not implement this call (yet)."""


class Internal(ChittyAuthError):
    """The server failed (INTERNAL, UNKNOWN, DATA_LOSS)."""


_BY_REASON: dict[str, type[ChittyAuthError]] = {
    "INVALID_GRANT": InvalidGrant,
    "INVALID_CLIENT": InvalidClient,
    "INVALID_SCOPE": InvalidScope,
    "RATE_LIMITED": RateLimited,
}

_BY_CODE: dict[grpc.StatusCode, type[ChittyAuthError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def error_from_status(
    code: grpc.StatusCode,
    message: str,
    trailing_metadata: object,
) -> ChittyAuthError:
    """The typed error for a refused call's status and trailers."""
    reason = ""
    info_metadata: dict[str, str] = {}
    retry_after: float | None = None
    status = _status_details(trailing_metadata)
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                info_metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, ChittyAuthError)
    return cls(
        message or code.name,
        code=code,
        reason=reason,
        metadata=info_metadata,
        retry_after=retry_after,
    )


def error_from_rpc(error: grpc.RpcError) -> ChittyAuthError:
    """The typed error for a failed sync or async gRPC call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else ""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else ()
    return error_from_status(code or grpc.StatusCode.UNKNOWN, details or "", trailers)


def _status_details(trailing_metadata: object) -> status_pb2.Status | None:
    if not trailing_metadata:
        return None
    try:
        pairs = list(trailing_metadata)  # type: ignore[call-overload]
    except TypeError:
        return None
    for pair in pairs:
        key, value = pair[0], pair[1]
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the status code
                return None
    return None
