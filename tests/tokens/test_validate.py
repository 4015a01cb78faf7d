"""Validate: good tokens are active; every attack in the catalogue is inactive with its reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server

Mint = Callable[..., Awaitable[str]]
R = token_pb2.InactiveReason


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


async def validate(
    channel: aio.Channel, token: str, **kw: Any
) -> auth_service_pb2.ValidateResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Validate(auth_service_pb2.ValidateRequest(token=token, **kw))


def sign_with_server_key(server: Server, claims: dict[str, Any], **header: Any) -> str:
    signer = server.keys.signer()
    return jwt.encode(
        claims, signer.key, algorithm=signer.algorithm,
        headers={"kid": signer.kid, "typ": "at+jwt", **header},
    )  # fmt: skip


async def test_good_token_is_active_with_claims(channel: aio.Channel, token_for: Mint) -> None:
    token = await token_for(
        subject="AB-C-DEF-1234-G-56-H-7", scopes=("mcp:read",), audience=("https://mcp.example",)
    )
    reply = await validate(channel, token)
    assert reply.active
    assert reply.inactive_reason == R.INACTIVE_REASON_UNSPECIFIED
    assert reply.credential_kind == token_pb2.CREDENTIAL_KIND_ACCESS_TOKEN
    assert reply.claims.sub == "AB-C-DEF-1234-G-56-H-7"
    assert list(reply.claims.scopes) == ["mcp:read"]
    assert list(reply.claims.aud) == ["https://mcp.example"]
    assert reply.claims.token_use == token_pb2.TOKEN_USE_SERVICE
    assert reply.claims.jti.startswith("at_")
    header, payload, _ = parts(token)
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    assert {"iss", "sub", "aud", "client_id", "scope", "iat", "exp", "jti"} <= set(payload)


async def test_expected_audience_scope_and_use(channel: aio.Channel, token_for: Mint) -> None:
    token = await token_for(scopes=("mcp:read",), audience=("https://a.example",))
    assert (await validate(channel, token, audience="https://a.example")).active
    wrong_aud = await validate(channel, token, audience="https://b.example")
    assert wrong_aud.inactive_reason == R.INACTIVE_REASON_WRONG_AUDIENCE
    scope = await validate(channel, token, required_scopes=["mcp:write"])
    assert scope.inactive_reason == R.INACTIVE_REASON_INSUFFICIENT_SCOPE
    use = await validate(channel, token, token_use=token_pb2.TOKEN_USE_PORTAL)
    assert use.inactive_reason == R.INACTIVE_REASON_WRONG_TOKEN_USE


async def test_payload_changed_after_signing(channel: aio.Channel, token_for: Mint) -> None:
    token = await token_for(scopes=("read",))
    header, _, signature = token.split(".")
    claims = parts(token)[1]
    claims["scope"] = "chittyauth:admin"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    reply = await validate(channel, forged)
    assert not reply.active
    assert reply.inactive_reason == R.INACTIVE_REASON_BAD_SIGNATURE


async def test_alg_none(channel: aio.Channel, token_for: Mint) -> None:
    header, claims, _ = parts(await token_for())
    forged_header = {**header, "alg": "none"}
    forged = f"{b64(json.dumps(forged_header).encode())}.{b64(json.dumps(claims).encode())}."
    reply = await validate(channel, forged)
    assert reply.inactive_reason == R.INACTIVE_REASON_BAD_SIGNATURE


async def test_hs256_signed_with_the_public_key(
    channel: aio.Channel, server: Server, token_for: Mint
) -> None:
    header, claims, _ = parts(await token_for())
    jwk = next(k for k in server.keys.jwks() if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    reply = await validate(channel, f"{signing_input}.{b64(mac)}")
    assert reply.inactive_reason == R.INACTIVE_REASON_BAD_SIGNATURE


async def test_unknown_kid(channel: aio.Channel, token_for: Mint) -> None:
    _, claims, _ = parts(await token_for())
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        claims, stranger, algorithm="ES256", headers={"kid": "key_stranger", "typ": "at+jwt"}
    )
    reply = await validate(channel, forged)
    assert reply.inactive_reason == R.INACTIVE_REASON_UNKNOWN_KEY


async def test_not_yet_valid_and_wrong_issuer(
    channel: aio.Channel, server: Server, token_for: Mint
) -> None:
    _, claims, _ = parts(await token_for())
    future = sign_with_server_key(server, {**claims, "jti": "at_f", "nbf": claims["iat"] + 3600})
    reply = await validate(channel, future)
    assert reply.inactive_reason == R.INACTIVE_REASON_NOT_YET_VALID
    foreign = sign_with_server_key(server, {**claims, "jti": "at_i", "iss": "https://evil.example"})
    reply = await validate(channel, foreign)
    assert reply.inactive_reason == R.INACTIVE_REASON_WRONG_ISSUER


async def test_expired(channel: aio.Channel, server: Server, token_for: Mint) -> None:
    _, claims, _ = parts(await token_for())
    old = sign_with_server_key(
        server,
        {**claims, "jti": "at_old", "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600},
    )
    reply = await validate(channel, old)
    assert reply.inactive_reason == R.INACTIVE_REASON_EXPIRED


@pytest.mark.parametrize(
    "garbage",
    ["", "not-a-token", "a.b", "a.b.c.d", "!!!.@@@.###", "e30.e30.", "x" * 100],
)
async def test_garbage_is_malformed(channel: aio.Channel, garbage: str) -> None:
    reply = await validate(channel, garbage)
    assert not reply.active
    assert reply.inactive_reason == R.INACTIVE_REASON_MALFORMED


async def test_truncated(channel: aio.Channel, token_for: Mint) -> None:
    token = await token_for()
    reply = await validate(channel, token[:-12])
    assert not reply.active
    assert reply.inactive_reason in (
        R.INACTIVE_REASON_BAD_SIGNATURE,
        R.INACTIVE_REASON_MALFORMED,
    )


async def test_one_megabyte_token_is_a_clear_answer(channel: aio.Channel) -> None:
    reply = await validate(channel, "e" * (1024 * 1024))
    assert not reply.active
    assert reply.inactive_reason == R.INACTIVE_REASON_MALFORMED


async def test_refresh_tokens_are_never_active(channel: aio.Channel) -> None:
    reply = await validate(channel, "rt_" + "a" * 43)
    assert not reply.active
    assert reply.credential_kind == token_pb2.CREDENTIAL_KIND_REFRESH_TOKEN


async def test_jwks_verifies_a_token_with_plain_pyjwt(
    channel: aio.Channel, server: Server, token_for: Mint
) -> None:
    token = await token_for(audience=("https://svc.example",))
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    jwks = await stub.GetJwks(auth_service_pb2.GetJwksRequest())
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks.keys if k.kid == kid)
    as_dict = {f: getattr(jwk, f) for f in ("kty", "kid", "use", "alg", "crv", "x", "y", "n", "e")}
    key = jwt.PyJWK({k: v for k, v in as_dict.items() if v})
    claims = jwt.decode(
        token, key.key, algorithms=[jwk.alg], audience="https://svc.example",
        issuer=server.config.tokens.issuer,
    )  # fmt: skip
    assert claims["jti"].startswith("at_")
