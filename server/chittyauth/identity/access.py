"""Verification of Cloudflare Access assertions (the ``Cf-Access-Jwt-Assertion`` header).

Access signs with RS256 and publishes its keys at ``<team domain>/cdn-cgi/access/certs``. The
key set is cached; a token naming an unknown ``kid`` triggers a refetch (keys rotate), but at
most once per ``jwks_refetch_min_interval_s`` so junk tokens cannot turn us into a load
generator against Cloudflare. Every refusal says only "invalid Cloudflare Access assertion" to
the caller and carries a distinct reason for the audit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import aiohttp
import jwt
from jwt.types import Options

from chittyauth.config import PortalConfig
from chittyauth.domain.errors import Unauthenticated, Unavailable

logger = logging.getLogger(__name__)

MAX_ASSERTION_BYTES: Final = 8 * 1024
_ALGORITHM: Final = "RS256"
_MAX_JWKS_BYTES: Final = 256 * 1024
_MIN_RSA_BITS: Final = 2048
_REFUSAL: Final = "invalid Cloudflare Access assertion"


@dataclass(frozen=True)
class AccessIdentity:
    """Who Cloudflare Access says is calling."""

    email: str
    subject: str
    claims: Mapping[str, Any] = field(compare=False, hash=False, repr=False)


class AccessVerifier:
    """Verifies Access assertions against the team's JWKS.

    Call ``start()`` inside the event loop before use and ``close()`` at shutdown (a session
    passed in is used as is and left open).
    """

    def __init__(
        self,
        config: PortalConfig,
        *,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        fetch_timeout_s: float = 5.0,
        jwks_max_age_s: float = 3600.0,
    ) -> None:
        """
        Args:
            config: The portal settings (team domain, audiences, leeway, refetch interval).
            clock: Wall-clock seconds since the epoch; judges exp/nbf/iat and refetch spacing.
            session: An HTTP session to fetch the JWKS with; one is created when omitted.
            fetch_timeout_s: Overall limit on one JWKS fetch.
            jwks_max_age_s: A cached key set older than this is fetched afresh, so a key
                Cloudflare withdrew stops verifying.
        """
        self._config = config
        self._issuer = config.team_domain.rstrip("/")
        self._certs_url = config.certs_url or f"{self._issuer}/cdn-cgi/access/certs"
        self._audiences = frozenset(config.audiences)
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._fetch_timeout = aiohttp.ClientTimeout(total=fetch_timeout_s)
        self._max_age_s = jwks_max_age_s
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._attempts = 0
        self._fetch_lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the HTTP session if none was given (idempotent)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP session if this verifier opened it (idempotent)."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> AccessVerifier:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def verify(self, assertion: str, *, email_header: str | None = None) -> AccessIdentity:
        """Check an assertion and return the identity it vouches for.

        Args:
            assertion: The ``Cf-Access-Jwt-Assertion`` header value.
            email_header: ``Cf-Access-Authenticated-User-Email`` when the request carried it;
                it must name the token's email (case-insensitive).

        Raises:
            Unauthenticated: reason ``ACCESS_*`` saying why (never in the message).
            Unavailable: the team's JWKS cannot be fetched.
        """
        if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
            raise _refuse("ACCESS_MALFORMED")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise _refuse("ACCESS_MALFORMED") from None
        if header.get("alg") != _ALGORITHM:
            # `none`, HS256 keyed with our public key and friends: never look at a key for them.
            raise _refuse("ACCESS_BAD_SIGNATURE")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("ACCESS_MALFORMED")
        key = await self._signing_key(kid)
        claims = self._decode(assertion, key)
        return self._check_claims(claims, email_header)

    def _decode(self, assertion: str, key: jwt.PyJWK) -> dict[str, Any]:
        # pyjwt checks the signature only; the claims are judged below against our own clock.
        options: Options = {
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
            # Short keys are dropped from the key set; this makes sure pyjwt never just warns.
            "enforce_minimum_key_length": True,
        }
        try:
            return jwt.decode(assertion, key.key, algorithms=[_ALGORITHM], options=options)
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise _refuse("ACCESS_BAD_SIGNATURE") from None
        except jwt.PyJWTError:
            raise _refuse("ACCESS_MALFORMED") from None

    def _check_claims(self, claims: dict[str, Any], email_header: str | None) -> AccessIdentity:
        if claims.get("iss") != self._issuer:
            raise _refuse("ACCESS_WRONG_ISSUER")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self._audiences.isdisjoint(
            a for a in audiences if isinstance(a, str)
        ):
            raise _refuse("ACCESS_WRONG_AUDIENCE")
        self._check_times(claims)
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise _refuse("ACCESS_MALFORMED")
        if email_header and email_header.casefold() != email.casefold():
            raise _refuse("ACCESS_EMAIL_MISMATCH")
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise _refuse("ACCESS_MALFORMED")
        return AccessIdentity(email=email, subject=subject, claims=MappingProxyType(claims))

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """exp is required; nbf and iat, when present, must not lie in the future."""
        now = self._clock()
        leeway = self._config.leeway_s
        exp = _number(claims.get("exp"))
        if exp is None:
            raise _refuse("ACCESS_MALFORMED")
        if now > exp + leeway:
            raise _refuse("ACCESS_EXPIRED")
        for name in ("nbf", "iat"):
            if name not in claims:
                continue
            value = _number(claims[name])
            if value is None:
                raise _refuse("ACCESS_MALFORMED")
            # Reported as expired: the token is outside its validity window either way.
            if value > now + leeway:
                raise _refuse("ACCESS_EXPIRED")

    async def _signing_key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is None or self._clock() - self._fetched_at >= self._max_age_s:
            keys = await self._refresh(seen=keys, rate_limited=False)
        key = keys.get(kid)
        if key is None:
            # Perhaps a rotation we have not seen yet; perhaps junk. Hence the rate limit.
            keys = await self._refresh(seen=keys, rate_limited=True)
            key = keys.get(kid)
        if key is None:
            raise _refuse("ACCESS_UNKNOWN_KEY")
        return key

    async def _refresh(
        self, *, seen: dict[str, jwt.PyJWK] | None, rate_limited: bool
    ) -> dict[str, jwt.PyJWK]:
        """Fetch the key set once, however many verifications are waiting for it.

        ``seen`` is the key set the caller found wanting; if another verification replaced it
        while this one waited for the lock, that result is used instead of fetching again.
        """
        attempts = self._attempts
        async with self._fetch_lock:
            current = self._keys
            if current is not None and current is not seen:
                return current
            if current is not None and rate_limited:
                if attempts != self._attempts or not self._may_refetch(self._clock()):
                    return current
            elif attempts != self._attempts:
                # The fetch this caller waited on has just failed; do not queue another.
                raise _jwks_unavailable()
            self._attempts += 1
            self._last_attempt = self._clock()
            keys = await self._fetch()
            self._keys, self._fetched_at = keys, self._clock()
            return keys

    def _may_refetch(self, now: float) -> bool:
        last = self._last_attempt
        return last is None or now - last >= self._config.jwks_refetch_min_interval_s

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._session is None:
            raise RuntimeError("AccessVerifier.start() has not been awaited")
        try:
            async with self._session.get(
                self._certs_url, timeout=self._fetch_timeout, allow_redirects=False
            ) as response:
                raw = await response.content.read(_MAX_JWKS_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("access jwks fetch failed", extra={"error": type(exc).__name__})
            raise _jwks_unavailable() from None
        if status != 200 or len(raw) > _MAX_JWKS_BYTES:
            logger.warning("access jwks fetch refused", extra={"status": status})
            raise _jwks_unavailable()
        keys = _parse_jwks(raw)
        if not keys:
            logger.error("access jwks holds no usable RS256 key")
            raise _jwks_unavailable()
        logger.info("access jwks fetched", extra={"kids": sorted(keys)})
        return keys


def _parse_jwks(raw: bytes) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a certs document by kid (``public_cert(s)`` are ignored)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return {}
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not _is_rs256_signing_key(entry):
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=_ALGORITHM)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            key = None
        if key is None or getattr(key.key, "key_size", 0) < _MIN_RSA_BITS:
            logger.warning("access jwks key skipped", extra={"kid": entry["kid"]})
            continue
        keys[entry["kid"]] = key
    return keys


def _is_rs256_signing_key(entry: Mapping[str, Any]) -> bool:
    kid = entry.get("kid")
    return (
        isinstance(kid, str)
        and bool(kid)
        and entry.get("kty") == "RSA"
        and entry.get("use", "sig") == "sig"
        and entry.get("alg", _ALGORITHM) == _ALGORITHM
    )


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _refuse(reason: str) -> Unauthenticated:
    return Unauthenticated(_REFUSAL, reason=reason)


def _jwks_unavailable() -> Unavailable:
    return Unavailable("Cloudflare Access keys are unavailable", reason="ACCESS_JWKS_UNAVAILABLE")
