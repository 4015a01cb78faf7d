"""KeyService (signing keys, admin) and the JWKS answer of AuthService.GetJwks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc import aio

from chitty.auth.v1 import (
    auth_service_pb2,
    key_service_pb2,
    key_service_pb2_grpc,
    signing_key_pb2,
    token_pb2,
)
from chittyauth.domain.errors import InvalidRequest, Unauthenticated
from chittyauth.domain.keys import KeyInfo, KeyRing, require_key_admin
from chittyauth.domain.principal import Principal
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.context import current_call
from chittyauth.rpc.convert import timestamp

ALGORITHM_TO_PROTO: dict[str, signing_key_pb2.KeyAlgorithm] = {
    "ES256": signing_key_pb2.KEY_ALGORITHM_ES256,
    "EdDSA": signing_key_pb2.KEY_ALGORITHM_EDDSA,
    "RS256": signing_key_pb2.KEY_ALGORITHM_RS256,
    "HS256": signing_key_pb2.KEY_ALGORITHM_HS256,
}
ALGORITHM_FROM_PROTO: dict[int, str] = {value: name for name, value in ALGORITHM_TO_PROTO.items()}
STATE_TO_PROTO: dict[str, signing_key_pb2.KeyState] = {
    "next": signing_key_pb2.KEY_STATE_NEXT,
    "active": signing_key_pb2.KEY_STATE_ACTIVE,
    "retired": signing_key_pb2.KEY_STATE_RETIRED,
}

Context = aio.ServicerContext[Any, Any]


class DeferredResolver:
    """A resolver found when a call arrives, so the servicer can be built before it exists."""

    def __init__(self, lookup: Callable[[], PrincipalResolver | None]) -> None:
        self._lookup = lookup

    def principal_for(self, bearer: str) -> Principal:
        """The principal from the resolver ``lookup`` returns.

        Raises:
            Unauthenticated: the credential is bad, or nothing can validate credentials yet.
        """
        resolver = self._lookup()
        if resolver is None:
            raise Unauthenticated("credentials cannot be validated yet")
        return resolver.principal_for(bearer)


class KeyServicer(key_service_pb2_grpc.KeyServiceServicer):
    """Lists and rotates signing keys; callers need chittyauth:admin or keys:admin."""

    def __init__(self, keyring: KeyRing, resolver: PrincipalResolver) -> None:
        self._keyring = keyring
        self._resolver = resolver

    async def ListSigningKeys(
        self, request: key_service_pb2.ListSigningKeysRequest, context: Context
    ) -> key_service_pb2.ListSigningKeysResponse:
        require_key_admin(caller(self._resolver))
        keys = await self._keyring.list_keys(_algorithm(request.algorithm))
        return key_service_pb2.ListSigningKeysResponse(keys=[signing_key(k) for k in keys])

    async def RotateSigningKey(
        self, request: key_service_pb2.RotateSigningKeyRequest, context: Context
    ) -> key_service_pb2.RotateSigningKeyResponse:
        principal = caller(self._resolver)
        rotation = await self._keyring.rotate_for(
            principal, _algorithm(request.algorithm) or None, request_id=current_call().request_id
        )
        return key_service_pb2.RotateSigningKeyResponse(
            active_key=signing_key(rotation.active),
            next_key=signing_key(rotation.next),
            retired_key=signing_key(rotation.retired) if rotation.retired else None,
        )


def signing_key(info: KeyInfo) -> signing_key_pb2.SigningKey:
    """The SigningKey message for a key's metadata."""
    return signing_key_pb2.SigningKey(
        kid=info.kid,
        algorithm=ALGORITHM_TO_PROTO[info.algorithm],
        state=STATE_TO_PROTO[info.state],
        create_time=timestamp(info.create_time),
        activate_time=timestamp(info.activate_time),
        retire_time=timestamp(info.retire_time),
        delete_time=timestamp(info.delete_time),
    )


def jwks_response(keyring: KeyRing) -> auth_service_pb2.GetJwksResponse:
    """The answer of AuthService.GetJwks: every published key (next, active, retired), each
    retired one with its ``retire_time`` so verifiers refuse what it signed afterwards."""
    keys = []
    for jwk in keyring.jwks():
        key = keyring.verifier(jwk["kid"])
        retired = key.retire_time if key is not None else None
        keys.append(token_pb2.Jwk(**jwk, retire_time=timestamp(retired)))
    return auth_service_pb2.GetJwksResponse(keys=keys)


def _algorithm(value: int) -> str:
    """The algorithm name of a KeyAlgorithm; '' for unspecified."""
    if value == signing_key_pb2.KEY_ALGORITHM_UNSPECIFIED:
        return ""
    name = ALGORITHM_FROM_PROTO.get(value)
    if name is None:
        raise InvalidRequest(f"unknown key algorithm {value}", reason="UNSUPPORTED_ALGORITHM")
    return name
