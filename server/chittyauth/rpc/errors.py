"""The one place that turns domain errors into gRPC status with google.rpc details."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from chittyauth.domain.errors import ERROR_DOMAIN, DomainError

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def status_for(error: DomainError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and the google.rpc.Status (ErrorInfo, RetryInfo) for a domain error."""
    code = grpc.StatusCode[error.grpc_code]
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [_pack(info)]
    if error.retry_after is not None:
        seconds = max(0.0, error.retry_after)
        whole = math.floor(seconds)
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=whole, nanos=int((seconds - whole) * 1_000_000_000)
            )
        )
        details.append(_pack(retry))
    status = status_pb2.Status(
        code=getattr(code_pb2, error.grpc_code), message=error.message, details=details
    )
    return code, status


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
