"""Helpers for the attacking tests: reading the refusal a real server gave."""

from __future__ import annotations

from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chittyauth.rpc.errors import STATUS_DETAILS_KEY


def error_info(error: aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of a refused call (domain ``auth.chitty.cc``)."""
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "auth.chitty.cc"
    return info.reason, dict(info.metadata)
