"""AccessVerifier against the JWKS of a real dev-authority subprocess."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chittyauth.config import PortalConfig
from chittyauth.domain.errors import Unauthenticated, Unavailable
from chittyauth.identity.access import AccessIdentity, AccessVerifier
from tests.support.devauthority import DevAuthority

LEEWAY_S = 30
REFETCH_S = 30.0
REFUSAL = "invalid Cloudflare Access assertion"


class FakeClock:
    """Wall-clock seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingSession:
    """An aiohttp session that records the URL of every request it sends."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._record)
        self.session = aiohttp.ClientSession(trace_configs=[trace])

    async def _record(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.urls.append(str(params.url))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fetches() -> AsyncIterator[CountingSession]:
    counting = CountingSession()
    async with counting.session:
        yield counting


def portal_config(authority: DevAuthority, **overrides: Any) -> PortalConfig:
    settings: dict[str, Any] = {
        "team_domain": authority.base_url,
        "audiences": ("chittyauth-dev", "another-app"),
        "leeway_s": LEEWAY_S,
        "jwks_refetch_min_interval_s": REFETCH_S,
    }
    settings.update(overrides)
    return PortalConfig(**settings)


@pytest.fixture
async def verifier(
    dev_authority: DevAuthority, clock: FakeClock, fetches: CountingSession
) -> AsyncIterator[AccessVerifier]:
    config = portal_config(dev_authority)
    async with AccessVerifier(config, clock=clock, session=fetches.session) as verifier:
        yield verifier


async def refused(verifier: AccessVerifier, assertion: str, **kwargs: Any) -> str:
    """The audit reason of a refusal, after checking the caller learns nothing more."""
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(assertion, **kwargs)
    assert caught.value.message == REFUSAL
    assert caught.value.grpc_code == "UNAUTHENTICATED"
    return caught.value.reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(assertion)
    claims = jwt.decode(assertion, options={"verify_signature": False})
    return header, claims


def fresh_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_good_assertion_is_accepted(
    verifier: AccessVerifier, dev_authority: DevAuthority
) -> None:
    assertion = await dev_authority.mint_assertion("Alice@Example.com")

    identity = await verifier.verify(assertion, email_header="alice@example.com")

    assert isinstance(identity, AccessIdentity)
    assert identity.email == "Alice@Example.com"
    assert identity.subject
    assert identity.claims["iss"] == dev_authority.base_url
    assert identity.claims["aud"] == ["chittyauth-dev"]


async def test_any_configured_audience_is_accepted(
    verifier: AccessVerifier, dev_authority: DevAuthority
) -> None:
    assertion = await dev_authority.mint_assertion("bob@example.com", audience="another-app")

    identity = await verifier.verify(assertion)

    assert identity.email == "bob@example.com"


async def test_wrong_audience(verifier: AccessVerifier, dev_authority: DevAuthority) -> None:
    assertion = await dev_authority.mint_assertion("a@example.com", audience="someone-else")

    assert await refused(verifier, assertion) == "ACCESS_WRONG_AUDIENCE"


async def test_wrong_issuer(
    dev_authority: DevAuthority, clock: FakeClock, fetches: CountingSession
) -> None:
    config = portal_config(
        dev_authority,
        team_domain="https://chitty.cloudflareaccess.com",
        certs_url=dev_authority.certs_url,
    )
    assertion = await dev_authority.mint_assertion("a@example.com")

    async with AccessVerifier(config, clock=clock, session=fetches.session) as verifier:
        assert await refused(verifier, assertion) == "ACCESS_WRONG_ISSUER"


async def test_expired(
    verifier: AccessVerifier, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    assertion = await dev_authority.mint_assertion("a@example.com", ttl_s=60)
    clock.advance(60 + LEEWAY_S - 5)
    assert (await verifier.verify(assertion)).email == "a@example.com"  # within leeway

    clock.advance(10)

    assert await refused(verifier, assertion) == "ACCESS_EXPIRED"


async def test_not_yet_valid(
    verifier: AccessVerifier, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    assertion = await dev_authority.mint_assertion("a@example.com")
    clock.advance(-(LEEWAY_S + 10))

    assert await refused(verifier, assertion) == "ACCESS_EXPIRED"


async def test_unknown_kid(verifier: AccessVerifier, dev_authority: DevAuthority) -> None:
    _, claims = unverified(await dev_authority.mint_assertion("a@example.com"))
    forged = jwt.encode(claims, fresh_key(), algorithm="RS256", headers={"kid": "not-in-jwks"})

    assert await refused(verifier, forged) == "ACCESS_UNKNOWN_KEY"


async def test_known_kid_signed_by_another_key(
    verifier: AccessVerifier, dev_authority: DevAuthority
) -> None:
    header, claims = unverified(await dev_authority.mint_assertion("a@example.com"))
    forged = jwt.encode(claims, fresh_key(), algorithm="RS256", headers={"kid": header["kid"]})

    assert await refused(verifier, forged) == "ACCESS_BAD_SIGNATURE"


async def test_tampered_payload(verifier: AccessVerifier, dev_authority: DevAuthority) -> None:
    assertion = await dev_authority.mint_assertion("mallory@example.com")
    header, _, signature = assertion.split(".")
    _, claims = unverified(assertion)
    claims["email"] = "admin@example.com"
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), signature])

    assert await refused(verifier, tampered) == "ACCESS_BAD_SIGNATURE"


async def test_email_header_mismatch(verifier: AccessVerifier, dev_authority: DevAuthority) -> None:
    assertion = await dev_authority.mint_assertion("alice@example.com")

    reason = await refused(verifier, assertion, email_header="bob@example.com")

    assert reason == "ACCESS_EMAIL_MISMATCH"


async def test_alg_none(verifier: AccessVerifier, dev_authority: DevAuthority) -> None:
    header, claims = unverified(await dev_authority.mint_assertion("a@example.com"))
    unsigned_header = {"alg": "none", "kid": header["kid"], "typ": "JWT"}
    forged = ".".join(
        [b64url(json.dumps(unsigned_header).encode()), b64url(json.dumps(claims).encode()), ""]
    )

    assert await refused(verifier, forged) == "ACCESS_BAD_SIGNATURE"


async def test_hs256_keyed_with_the_public_key(
    verifier: AccessVerifier, dev_authority: DevAuthority
) -> None:
    header, claims = unverified(await dev_authority.mint_assertion("a@example.com"))
    public_pem = jwt.PyJWK((await dev_authority.certs())["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = {"alg": "HS256", "kid": header["kid"], "typ": "JWT"}
    signing_input = ".".join(
        [b64url(json.dumps(hs_header).encode()), b64url(json.dumps(claims).encode())]
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(mac)}"

    assert await refused(verifier, forged) == "ACCESS_BAD_SIGNATURE"


async def test_oversized_and_garbage_assertions_are_malformed(
    verifier: AccessVerifier, fetches: CountingSession
) -> None:
    oversized = "eyJ" + "A" * 9000

    assert await refused(verifier, oversized) == "ACCESS_MALFORMED"
    assert await refused(verifier, "not-a-jwt") == "ACCESS_MALFORMED"
    assert await refused(verifier, "") == "ACCESS_MALFORMED"
    assert fetches.urls == []  # refused before the keys were needed


async def test_unknown_kid_refetch_is_rate_limited(
    verifier: AccessVerifier,
    dev_authority: DevAuthority,
    clock: FakeClock,
    fetches: CountingSession,
) -> None:
    good = await dev_authority.mint_assertion("a@example.com", ttl_s=3600)
    _, claims = unverified(good)
    forged = jwt.encode(claims, fresh_key(), algorithm="RS256", headers={"kid": "rotated-away"})

    await verifier.verify(good)
    assert fetches.urls == [dev_authority.certs_url]

    # Fetched a moment ago: an unknown kid does not trigger another fetch, however often.
    for _ in range(5):
        assert await refused(verifier, forged) == "ACCESS_UNKNOWN_KEY"
    assert len(fetches.urls) == 1

    clock.advance(REFETCH_S)
    assert await refused(verifier, forged) == "ACCESS_UNKNOWN_KEY"
    assert len(fetches.urls) == 2
    assert await refused(verifier, forged) == "ACCESS_UNKNOWN_KEY"
    assert len(fetches.urls) == 2

    assert (await verifier.verify(good)).email == "a@example.com"  # cached keys still serve
    assert len(fetches.urls) == 2


async def test_unreachable_jwks_is_unavailable(
    verifier: AccessVerifier, dev_authority: DevAuthority
) -> None:
    assertion = await dev_authority.mint_assertion("a@example.com")
    await dev_authority.stop()

    with pytest.raises(Unavailable) as caught:
        await verifier.verify(assertion)

    assert caught.value.reason == "ACCESS_JWKS_UNAVAILABLE"
    assert caught.value.grpc_code == "UNAVAILABLE"


async def test_verifier_owns_its_session_when_none_is_given(
    dev_authority: DevAuthority, clock: FakeClock
) -> None:
    assertion = await dev_authority.mint_assertion("carol@example.com")

    async with AccessVerifier(portal_config(dev_authority), clock=clock) as verifier:
        identity = await verifier.verify(assertion)

    assert identity.email == "carol@example.com"
