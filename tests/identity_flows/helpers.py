"""Helpers for the identity flow tests."""

from __future__ import annotations

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chittyauth.rpc.errors import STATUS_DETAILS_KEY


def details(error: aio.AioRpcError) -> tuple[str, float | None]:
    """The ErrorInfo reason and the RetryInfo delay (seconds, or None) of a refused call."""
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    reason, retry = "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry_info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry_info):
            delay: duration_pb2.Duration = retry_info.retry_delay
            retry = delay.seconds + delay.nanos / 1e9
    return reason, retry
