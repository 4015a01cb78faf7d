"""The request decoder's range checks and the bounded JSON parser, at their exact limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from chitty.auth.v1 import (
    api_key_service_pb2,
    auth_service_pb2,
    client_service_pb2,
)
from chittyauth.domain.errors import InvalidRequest
from chittyauth.http.errors import (
    MAX_JSON_DEPTH,
    JsonTooDeep,
    MalformedJson,
    json_depth,
    parse_json,
)
from chittyauth.rpc.decoding import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    checker_for,
    decoder_for,
)

DERANDOMIZED = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def _reason(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    return caught.value.reason


def test_a_type_without_well_known_fields_gets_no_checker() -> None:
    # Validate's request: nothing to check, so the hot path pays nothing for the checks.
    assert checker_for(auth_service_pb2.ValidateRequest.DESCRIPTOR) is None
    assert checker_for(api_key_service_pb2.CreateApiKeyRequest.DESCRIPTOR) is not None
    # Reached through a nested message (Client.create_time).
    assert checker_for(client_service_pb2.CreateClientRequest.DESCRIPTOR) is not None


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (MIN_TIMESTAMP_SECONDS, 0, True),
        (MAX_TIMESTAMP_SECONDS, 999_999_999, True),
        (MIN_TIMESTAMP_SECONDS - 1, 0, False),
        (MAX_TIMESTAMP_SECONDS + 1, 0, False),
        (0, -1, False),
        (0, 1_000_000_000, False),
    ],
)
def test_timestamp_limits_are_exact(seconds: int, nanos: int, ok: bool) -> None:
    decode = decoder_for(api_key_service_pb2.CreateApiKeyRequest.FromString)
    assert decode is not None
    request = api_key_service_pb2.CreateApiKeyRequest(
        expire_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    )
    body = request.SerializeToString()
    if ok:
        assert decode(body) == request
    else:
        assert _reason(decode, body) == "TIMESTAMP_OUT_OF_RANGE"


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (MAX_DURATION_SECONDS, 999_999_999, True),
        (-MAX_DURATION_SECONDS, -999_999_999, True),
        (0, -5, True),  # a negative sub-second duration
        (MAX_DURATION_SECONDS + 1, 0, False),
        (-1, 5, False),
        (1, -5, False),
        (0, 1_000_000_000, False),
    ],
)
def test_duration_limits_and_signs_are_exact(seconds: int, nanos: int, ok: bool) -> None:
    decode = decoder_for(auth_service_pb2.IssueTokenRequest.FromString)
    assert decode is not None
    request = auth_service_pb2.IssueTokenRequest(
        ttl=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )
    if ok:
        assert decode(request.SerializeToString()) == request
    else:
        assert _reason(decode, request.SerializeToString()) == "DURATION_OUT_OF_RANGE"


def test_non_finite_number_deep_in_a_struct_is_named_by_its_path() -> None:
    decode = decoder_for(auth_service_pb2.IssueTokenRequest.FromString)
    assert decode is not None
    claims = struct_pb2.Struct()
    claims.update({"a": {"b": [1, 2, {"c": 0.5}]}})
    claims["a"]["b"][2]["c"] = float("-inf")
    request = auth_service_pb2.IssueTokenRequest(extra_claims=claims)
    with pytest.raises(InvalidRequest) as caught:
        decode(request.SerializeToString())
    assert caught.value.reason == "NUMBER_NOT_FINITE"
    assert caught.value.metadata == {"field": "extra_claims.a.b[2].c"}


def test_finite_extremes_in_a_struct_pass() -> None:
    decode = decoder_for(auth_service_pb2.IssueTokenRequest.FromString)
    assert decode is not None
    request = auth_service_pb2.IssueTokenRequest()
    request.extra_claims.update({"big": 1.7976931348623157e308, "tiny": 5e-324, "neg": -0.0})
    assert decode(request.SerializeToString()) == request


def test_undecodable_bytes_are_malformed_request() -> None:
    decode = decoder_for(auth_service_pb2.ValidateRequest.FromString)
    assert decode is not None
    assert _reason(decode, b"\x0a\xff\xff\xff\xff\x03abc") == "MALFORMED_REQUEST"


# -- JSON -------------------------------------------------------------------------------------


def _reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:é'),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=4)
    ),
    max_leaves=40,
)


@DERANDOMIZED
@given(_JSON)
def test_json_depth_agrees_with_a_recursive_count(value: Any) -> None:
    # Brackets inside strings (escaped quotes included) must not count.
    assert json_depth(json.dumps(value, ensure_ascii=False).encode()) == _reference_depth(value)


def test_parse_json_bound_is_exact() -> None:
    at_bound = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(at_bound) is not None
    with pytest.raises(JsonTooDeep):
        parse_json(b"[" + at_bound + b"]")
    with pytest.raises(JsonTooDeep):
        parse_json(b"[" * 100_000 + b"]" * 100_000)  # past the parser's own recursion limit


@pytest.mark.parametrize("body", [b"NaN", b'{"x": Infinity}', b"[-Infinity]", b"\xff{}", b"{"])
def test_parse_json_refuses_what_is_not_json(body: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_json(body)
