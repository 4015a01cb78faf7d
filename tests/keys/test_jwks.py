"""Published JWKs (RFC 7517/7518/8037) verify what the private keys sign, with plain pyjwt."""

from __future__ import annotations

import base64
from pathlib import Path

import jwt
import pytest

from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.rpc.keys import jwks_response
from tests.keys.helpers import keys_config, open_ring


def b64_bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.mark.parametrize(
    ("algorithm", "members"),
    [
        ("ES256", {"kty": "EC", "crv": "P-256"}),
        ("EdDSA", {"kty": "OKP", "crv": "Ed25519"}),
        ("RS256", {"kty": "RSA", "e": "AQAB"}),
    ],
)
async def test_jwk_verifies_a_signature_of_the_private_key(
    tmp_path: Path, algorithm: str, members: dict[str, str]
) -> None:
    async with open_ring(keys_config(tmp_path / "k.db", algorithm=algorithm), FakeClock()) as (
        _,
        ring,
    ):
        signer = ring.signer()
        token = jwt.encode(
            {"sub": "s"}, signer.key, algorithm=algorithm, headers={"kid": signer.kid}
        )
        jwks = {jwk["kid"]: jwk for jwk in ring.jwks()}
        assert len(jwks) == 2  # active and next
        jwk = jwks[signer.kid]

    assert jwk.items() >= {**members, "kid": signer.kid, "use": "sig", "alg": algorithm}.items()
    # Public members only: no private parameter and nothing outside the RFC members.
    assert set(jwk) <= {"kty", "kid", "use", "alg", "crv", "x", "y", "n", "e"}
    if algorithm == "ES256":
        assert len(b64_bytes(jwk["x"])) == len(b64_bytes(jwk["y"])) == 32
    elif algorithm == "EdDSA":
        assert len(b64_bytes(jwk["x"])) == 32
        assert "y" not in jwk
    else:
        assert len(b64_bytes(jwk["n"])) * 8 == 3072
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=[algorithm]) == {"sub": "s"}
    [other] = [j for kid, j in jwks.items() if kid != signer.kid]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, jwt.PyJWK(other).key, algorithms=[algorithm])


async def test_hs256_secrets_sign_and_verify_but_are_never_published(tmp_path: Path) -> None:
    async with open_ring(keys_config(tmp_path / "k.db", algorithm="HS256"), FakeClock()) as (
        _,
        ring,
    ):
        signer = ring.signer()
        assert isinstance(signer.key, bytes)
        assert len(signer.key) == 32
        token = jwt.encode({"sub": "s"}, signer.key, algorithm="HS256")
        verifier = ring.verifier(signer.kid)
        assert verifier is not None
        assert jwt.decode(token, verifier.key, algorithms=["HS256"]) == {"sub": "s"}
        assert ring.jwks() == []


async def test_jwks_response_lists_next_active_and_retired(server: Server) -> None:
    before = {info.state: info.kid for info in server.keys.infos()}
    rotation = await server.keys.rotate()
    response = jwks_response(server.keys)
    kids = {jwk.kid for jwk in response.keys}
    assert kids == {before["active"], before["next"], rotation.next.kid}
    for jwk in response.keys:
        assert (jwk.kty, jwk.crv, jwk.use, jwk.alg) == ("EC", "P-256", "sig", "ES256")
        assert jwk.x
        assert jwk.y
