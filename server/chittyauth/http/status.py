"""gRPC status -> HTTP: the google.rpc.Code table and google.rpc.Status JSON bodies.

Transcoded routes answer errors the way grpc-gateway and Google's HTTP APIs do: the HTTP status
from the canonical table in ``google/rpc/code.proto`` and a body that is the google.rpc.Status
in proto3 JSON, its ``details`` (ErrorInfo, RetryInfo, BadRequest …) rendered by json_format.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from chittyauth.domain.errors import ERROR_DOMAIN

STATUS_DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "x-request-id"

#: google.rpc.Code -> HTTP status, as documented in google/rpc/code.proto.
HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

MetadataPairs = Iterable[tuple[str, str | bytes]]


@dataclass(frozen=True)
class HttpError:
    """An error ready to send: HTTP status, google.rpc.Status JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code (500 for one the table does not know)."""
    return HTTP_STATUS_BY_CODE.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    """The google.rpc.Code number of a ``grpc.StatusCode`` (``NOT_FOUND`` -> 5)."""
    number: int = code.value[0]
    return number


def from_rpc_error(error: grpc.aio.AioRpcError) -> HttpError:
    """Map a failed call to its HTTP status, Status JSON and headers.

    The details come from the ``grpc-status-details-bin`` trailer when the server sent one;
    ``Retry-After`` from a RetryInfo detail; ``x-request-id`` from the trailing or initial
    metadata.
    """
    # grpc-stubs types the metadata as objects with .key/.value; grpc.aio yields pairs.
    return from_status(
        error.code(),
        error.details() or "",
        trailing_metadata=cast(MetadataPairs, error.trailing_metadata() or ()),
        initial_metadata=cast(MetadataPairs, error.initial_metadata() or ()),
    )


def from_status(
    code: grpc.StatusCode,
    message: str,
    *,
    trailing_metadata: MetadataPairs = (),
    initial_metadata: MetadataPairs = (),
) -> HttpError:
    """Like :func:`from_rpc_error`, from the parts of a finished call."""
    trailing = list(trailing_metadata)
    status = _decode_details(trailing)
    if status is None or status.code != code_number(code):
        # No rich status, or one that contradicts the call's own code: trust the call.
        status = status_pb2.Status(code=code_number(code), message=message)
    elif not status.message:
        status.message = message
    headers: dict[str, str] = {}
    retry_after = _retry_after_seconds(status)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    request_id = metadata_value(trailing, REQUEST_ID_KEY) or metadata_value(
        initial_metadata, REQUEST_ID_KEY
    )
    if request_id:
        headers["X-Request-Id"] = request_id
    return HttpError(http_status(code), status_json(status), headers)


def local_error(
    http_status_code: int,
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    field_path: str | None = None,
    description: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpError:
    """An error the shim itself raises (bad JSON, unknown route …) in the same Status shape.

    Args:
        http_status_code: The HTTP status to answer with (e.g. 400, 404, 405, 413, 415).
        code: The google.rpc.Code the body carries.
        message: Safe to show to the caller.
        reason: A stable UPPER_SNAKE ErrorInfo reason.
        field_path: When the request names a bad field, its path (``device.client_type``);
            adds a google.rpc.BadRequest field violation.
        description: The violation's description; defaults to ``message``.
        headers: Extra response headers (``Allow`` on 405).

    Returns:
        The error, with ErrorInfo (domain ``auth.chitty.cc``) and the optional BadRequest.
    """
    details = [_pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))]
    if field_path is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=field_path, description=description or message
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    status = status_pb2.Status(code=code_number(code), message=message, details=details)
    return HttpError(http_status_code, status_json(status), dict(headers or {}))


def bad_request(message: str, field_path: str | None = None, *, description: str = "") -> HttpError:
    """400 INVALID_ARGUMENT for a request the shim cannot turn into a message."""
    return local_error(
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        reason="INVALID_REQUEST",
        field_path=field_path,
        description=description or None,
    )


def status_json(status: status_pb2.Status) -> dict[str, Any]:
    """The proto3 JSON form of a google.rpc.Status, every detail rendered by type.

    A detail whose type is not in the descriptor pool is rendered as ``@type`` plus the
    base64 ``value`` rather than failing the whole error.
    """
    return {
        "code": status.code,
        "message": status.message,
        "details": [_detail_json(detail) for detail in status.details],
    }


def metadata_value(metadata: MetadataPairs, key: str) -> str:
    """The first text value of ``key`` in gRPC metadata, or ``""``."""
    for name, value in metadata:
        if name == key and isinstance(value, str):
            return value
    return ""


def _decode_details(metadata: MetadataPairs) -> status_pb2.Status | None:
    for name, value in metadata:
        if name == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a corrupt trailer must not hide the real error
                return None
            return status
    return None


def _detail_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        rendered: dict[str, Any] = json_format.MessageToDict(
            detail,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    except (TypeError, KeyError, json_format.Error):
        return {
            "@type": detail.type_url,
            "value": base64.b64encode(detail.value).decode("ascii"),
        }
    return rendered


def _retry_after_seconds(status: status_pb2.Status) -> int | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            # Retry-After takes whole seconds; round up so a client never retries early.
            return max(0, math.ceil(delay))
    return None


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
