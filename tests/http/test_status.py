"""gRPC status -> HTTP status, google.rpc.Status JSON and headers."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from chittyauth.http import status

CANONICAL = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _error(
    code: grpc.StatusCode,
    details: str,
    trailing: tuple[tuple[str, str | bytes], ...] = (),
    initial: tuple[tuple[str, str | bytes], ...] = (),
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(*initial),
        grpc.aio.Metadata(*trailing),
        details=details,
        debug_error_string=None,
    )


def test_table_is_the_canonical_one_and_covers_every_code() -> None:
    assert {code.name: status.http_status(code) for code in grpc.StatusCode} == CANONICAL


def test_rich_status_details_are_rendered_as_json_with_headers() -> None:
    rich = status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
        message="slow down",
        details=[
            _packed(error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="auth.chitty.cc")),
            _packed(
                error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=1))
            ),
        ],
    )
    error = status.from_rpc_error(
        _error(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
            trailing=(
                (status.STATUS_DETAILS_KEY, rich.SerializeToString()),
                ("x-request-id", "req-7"),
            ),
        )
    )
    assert error.status == 429
    assert error.headers == {"Retry-After": "3", "X-Request-Id": "req-7"}
    assert error.body == {
        "code": 8,
        "message": "slow down",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMITED",
                "domain": "auth.chitty.cc",
                "metadata": {},
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "2.000000001s"},
        ],
    }


def test_plain_error_without_details() -> None:
    error = status.from_rpc_error(
        _error(grpc.StatusCode.NOT_FOUND, "no such client", initial=(("x-request-id", "r1"),))
    )
    assert error.status == 404
    assert error.body == {"code": 5, "message": "no such client", "details": []}
    assert error.headers == {"X-Request-Id": "r1"}


def test_details_that_contradict_the_call_code_are_ignored() -> None:
    other = status_pb2.Status(code=grpc.StatusCode.OK.value[0], message="fine")
    error = status.from_rpc_error(
        _error(
            grpc.StatusCode.INTERNAL,
            "boom",
            trailing=((status.STATUS_DETAILS_KEY, other.SerializeToString()),),
        )
    )
    assert (error.status, error.body["code"], error.body["message"]) == (500, 13, "boom")
    assert error.body["details"] == []


def test_corrupt_details_do_not_hide_the_error() -> None:
    error = status.from_rpc_error(
        _error(
            grpc.StatusCode.ABORTED,
            "conflict",
            trailing=((status.STATUS_DETAILS_KEY, b"\xff\xff"),),
        )
    )
    assert error.status == 409
    assert error.body == {"code": 10, "message": "conflict", "details": []}


def test_unknown_detail_type_is_rendered_raw() -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Nope", value=b"\x01\x02")
    rich = status_pb2.Status(code=3, message="bad", details=[unknown])
    error = status.from_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad",
        trailing_metadata=[(status.STATUS_DETAILS_KEY, rich.SerializeToString())],
    )
    assert error.body["details"] == [{"@type": "type.googleapis.com/acme.Nope", "value": "AQI="}]


def test_empty_rich_message_falls_back_to_the_call_details() -> None:
    rich = status_pb2.Status(code=5)
    error = status.from_status(
        grpc.StatusCode.NOT_FOUND,
        "from the call",
        trailing_metadata=[(status.STATUS_DETAILS_KEY, rich.SerializeToString())],
    )
    assert error.body["message"] == "from the call"


@pytest.mark.parametrize(("seconds", "nanos", "header"), [(0, 0, "0"), (0, 1, "1"), (5, 0, "5")])
def test_retry_after_rounds_up(seconds: int, nanos: int, header: str) -> None:
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )
    rich = status_pb2.Status(code=14, message="later", details=[_packed(retry)])
    error = status.from_status(
        grpc.StatusCode.UNAVAILABLE,
        "later",
        trailing_metadata=[(status.STATUS_DETAILS_KEY, rich.SerializeToString())],
    )
    assert error.status == 503
    assert error.headers["Retry-After"] == header


def test_bad_request_names_the_field() -> None:
    error = status.bad_request(
        "device.bogus: unknown field", "device.bogus", description="unknown field"
    )
    assert error.status == 400
    assert error.body["code"] == 3
    assert error.body["message"] == "device.bogus: unknown field"
    info, bad = error.body["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert (info["reason"], info["domain"]) == ("INVALID_REQUEST", "auth.chitty.cc")
    assert bad["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert bad["field_violations"][0]["field"] == "device.bogus"
    assert bad["field_violations"][0]["description"] == "unknown field"


def test_local_error_carries_headers_and_no_violation_without_a_field() -> None:
    error = status.local_error(
        405,
        grpc.StatusCode.UNIMPLEMENTED,
        "DELETE is not allowed",
        reason="METHOD_NOT_ALLOWED",
        headers={"Allow": "GET, PUT"},
    )
    assert (error.status, error.headers) == (405, {"Allow": "GET, PUT"})
    assert [d["@type"] for d in error.body["details"]] == [
        "type.googleapis.com/google.rpc.ErrorInfo"
    ]
