"""Bad gRPC input is INVALID_ARGUMENT with a reason, logged once at INFO, never a traceback.

Every case goes through a real server over a real channel with raw bytes, so the body is what
an attacker chooses, not what a generated stub would send: bodies that do not decode, and
well-known types out of their range (Timestamp, Duration, NaN / Infinity in a Struct).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    audit_service_pb2,
    auth_service_pb2,
    permission_service_pb2,
)
from chittyauth.app import Server
from tests.conftest import bearer, token_minter
from tests.security.helpers import error_info

Minter = Callable[..., Awaitable[str]]

# Field 1, length-delimited, announcing 1 GiB that never comes: no parser accepts it.
UNDECODABLE = b"\x0a\xff\xff\xff\xff\x03abc"
# A varint that never ends (ten continuation bytes).
RUNAWAY_VARINT = b"\x08" + b"\xff" * 10 + b"\x01"


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


def _refusals(caplog: pytest.LogCaptureFixture, reason: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "reason", None) == reason]


async def _raw_unary(
    channel: aio.Channel, method: str, body: bytes, token: str = ""
) -> aio.AioRpcError:
    call = channel.unary_unary(method)
    with pytest.raises(aio.AioRpcError) as caught:
        await call(body, metadata=bearer(token) if token else None, timeout=10)
    return caught.value


# -- undecodable bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [UNDECODABLE, RUNAWAY_VARINT], ids=["length", "varint"])
async def test_undecodable_body_is_invalid_argument_logged_once_without_traceback(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    caplog.set_level(logging.INFO)
    error = await _raw_unary(channel, "/chitty.auth.v1.AuthService/Validate", body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ValidateRequest" in (error.details() or "")
    reason, _ = error_info(error)
    assert reason == "MALFORMED_REQUEST"
    refusals = _refusals(caplog, "MALFORMED_REQUEST")
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.INFO
    assert _tracebacks(caplog) == []


async def test_undecodable_body_of_a_stream_is_invalid_argument(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    call = channel.unary_stream("/chitty.auth.v1.AuthService/WatchRevocations")(UNDECODABLE)
    with pytest.raises(aio.AioRpcError) as caught:
        await call.read()
    # The stream needs a caller first: an anonymous one is refused before its body is read.
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _tracebacks(caplog) == []


async def test_undecodable_body_of_an_admitted_stream_is_invalid_argument(
    server: Server, channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    token = await token_minter(server)()
    call = channel.unary_stream("/chitty.auth.v1.AuthService/WatchRevocations")(
        UNDECODABLE, metadata=bearer(token)
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value)[0] == "MALFORMED_REQUEST"
    assert _tracebacks(caplog) == []


async def test_undecodable_health_check_is_invalid_argument(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    error = await _raw_unary(channel, "/grpc.health.v1.Health/Check", UNDECODABLE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _tracebacks(caplog) == []


async def test_protected_method_refuses_an_anonymous_caller_before_reading_the_body(
    channel: aio.Channel,
) -> None:
    error = await _raw_unary(channel, "/chitty.auth.v1.ApiKeyService/ListApiKeys", UNDECODABLE)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# -- well-known types out of range -------------------------------------------------------------


def _timestamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    ("stamp", "why"),
    [
        (_timestamp(2**62), "after 9999-12-31"),
        (_timestamp(-(2**62)), "before 0001-01-01"),
        (_timestamp(1_900_000_000, 1_000_000_000), "nanos above 999999999"),
        (_timestamp(1_900_000_000, -1), "negative nanos"),
    ],
)
async def test_create_api_key_refuses_an_out_of_range_timestamp(
    server: Server, channel: aio.Channel, caplog: pytest.LogCaptureFixture, stamp, why: str
) -> None:
    token = await token_minter(server)(
        subject="chitty-person-1", token_use="portal", scopes=("api_keys:generate",)
    )
    request = api_key_service_pb2.CreateApiKeyRequest(
        chitty_id="chitty-person-1", display_name="k", scopes=["mcp:read"], expire_time=stamp
    )
    error = await _raw_unary(
        channel,
        "/chitty.auth.v1.ApiKeyService/CreateApiKey",
        request.SerializeToString(),
        token,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, why
    reason, metadata = error_info(error)
    assert reason == "TIMESTAMP_OUT_OF_RANGE"
    assert metadata["field"] == "expire_time"
    assert _tracebacks(caplog) == []


async def test_list_audit_events_refuses_an_out_of_range_start_time(
    server: Server, channel: aio.Channel
) -> None:
    token = await token_minter(server)()
    request = audit_service_pb2.ListAuditEventsRequest(start_time=_timestamp(2**40))
    error = await _raw_unary(
        channel,
        "/chitty.auth.v1.AuditService/ListAuditEvents",
        request.SerializeToString(),
        token,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error) == ("TIMESTAMP_OUT_OF_RANGE", {"field": "start_time"})


async def test_grant_permission_refuses_an_out_of_range_expire_time(
    server: Server, channel: aio.Channel
) -> None:
    token = await token_minter(server)()
    request = permission_service_pb2.GrantPermissionRequest(expire_time=_timestamp(-(2**50)))
    error = await _raw_unary(
        channel,
        "/chitty.auth.v1.PermissionService/GrantPermission",
        request.SerializeToString(),
        token,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error)[0] == "TIMESTAMP_OUT_OF_RANGE"


def _struct_with(number: float) -> struct_pb2.Struct:
    inner = struct_pb2.Struct()
    inner.fields["x"].number_value = number
    outer = struct_pb2.Struct()
    outer.fields["nested"].list_value.values.add().struct_value.CopyFrom(inner)
    return outer


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_register_account_refuses_a_non_finite_number_in_metadata(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture, number: float
) -> None:
    request = auth_service_pb2.RegisterAccountRequest(email="a@example.com", password="pw" * 8)
    request.metadata.CopyFrom(_struct_with(number))
    error = await _raw_unary(
        channel, "/chitty.auth.v1.AuthService/RegisterAccount", request.SerializeToString()
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, metadata = error_info(error)
    assert reason == "NUMBER_NOT_FINITE"
    assert metadata["field"] == "metadata.nested[0].x"
    assert _tracebacks(caplog) == []


async def test_issue_token_refuses_infinity_in_extra_claims(
    server: Server, channel: aio.Channel
) -> None:
    token = await token_minter(server)()
    request = auth_service_pb2.IssueTokenRequest(chitty_id="chitty-person-1")
    request.extra_claims.fields["weight"].number_value = float("inf")
    error = await _raw_unary(
        channel, "/chitty.auth.v1.AuthService/IssueToken", request.SerializeToString(), token
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error) == ("NUMBER_NOT_FINITE", {"field": "extra_claims.weight"})


@pytest.mark.parametrize(
    "ttl",
    [
        duration_pb2.Duration(seconds=2**62),
        duration_pb2.Duration(seconds=-(2**62)),
        duration_pb2.Duration(seconds=1, nanos=-5),  # signs disagree
        duration_pb2.Duration(seconds=0, nanos=1_000_000_000),
    ],
)
async def test_issue_token_refuses_an_out_of_range_ttl(
    server: Server, channel: aio.Channel, ttl: duration_pb2.Duration
) -> None:
    token = await token_minter(server)()
    request = auth_service_pb2.IssueTokenRequest(chitty_id="chitty-person-1", ttl=ttl)
    error = await _raw_unary(
        channel, "/chitty.auth.v1.AuthService/IssueToken", request.SerializeToString(), token
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error) == ("DURATION_OUT_OF_RANGE", {"field": "ttl"})
