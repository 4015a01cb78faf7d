"""Conversions between domain values and chitty.auth.v1 messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from chitty.auth.v1 import token_pb2
from chittyauth.domain.tokens import RESERVED_CLAIMS

TOKEN_USE_TO_PROTO = {
    "portal": token_pb2.TOKEN_USE_PORTAL,
    "linked_app": token_pb2.TOKEN_USE_LINKED_APP,
    "mcp_server": token_pb2.TOKEN_USE_MCP_SERVER,
    "service": token_pb2.TOKEN_USE_SERVICE,
    "exchange": token_pb2.TOKEN_USE_EXCHANGE,
    "user": token_pb2.TOKEN_USE_USER,
}
TOKEN_USE_FROM_PROTO = {value: name for name, value in TOKEN_USE_TO_PROTO.items()}
TOKEN_USE_FROM_PROTO[token_pb2.TOKEN_USE_UNSPECIFIED] = ""

INACTIVE_REASON_TO_PROTO: dict[str, Any] = {
    name.removeprefix("INACTIVE_REASON_"): value for name, value in token_pb2.InactiveReason.items()
}

CREDENTIAL_KIND_TO_PROTO = {
    "access_token": token_pb2.CREDENTIAL_KIND_ACCESS_TOKEN,
    "api_key": token_pb2.CREDENTIAL_KIND_API_KEY,
    "refresh_token": token_pb2.CREDENTIAL_KIND_REFRESH_TOKEN,
    "": token_pb2.CREDENTIAL_KIND_UNSPECIFIED,
}


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for epoch seconds, or None for "not set"."""
    if seconds is None:
        return None
    whole = int(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def claims_message(claims: Mapping[str, Any]) -> token_pb2.TokenClaims:
    """TokenClaims for validated claims (access token or API key)."""
    aud = claims.get("aud", ())
    message = token_pb2.TokenClaims(
        iss=str(claims.get("iss", "")),
        sub=str(claims.get("sub", "")),
        aud=[aud] if isinstance(aud, str) else [str(a) for a in aud],
        client_id=str(claims.get("client_id", "")),
        scopes=str(claims.get("scope", "")).split(),
        jti=str(claims.get("jti", "")),
        sid=str(claims.get("sid", "")),
        token_use=TOKEN_USE_TO_PROTO.get(
            str(claims.get("token_use", "")), token_pb2.TOKEN_USE_UNSPECIFIED
        ),
        server_id=str(claims.get("server_id", "")),
        capabilities=[str(c) for c in claims.get("capabilities", ())],
        chitty_id=str(claims.get("chitty_id", "")),
        key_id=str(claims.get("kid", "")),
    )
    for name, field in (("iat", "issue_time"), ("exp", "expire_time"), ("nbf", "not_before_time")):
        if isinstance(claims.get(name), int | float):
            getattr(message, field).CopyFrom(timestamp(float(claims[name])))
    act = claims.get("act")
    if isinstance(act, Mapping):
        message.act.sub = str(act.get("sub", ""))
        message.act.client_id = str(act.get("client_id", ""))
    extra = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}
    if extra:
        struct = struct_pb2.Struct()
        struct.update(extra)
        message.extra_claims.CopyFrom(struct)
    return message
