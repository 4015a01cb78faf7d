"""``LocalVerifier``: checks ChittyAuth access tokens in-process, with no call per request.

Signatures are checked against the JWKS from ``GetJwks`` (cached; refetched when a token names
an unknown ``kid``, at most once per ``jwks_refetch_min_interval_s``, and every
``jwks_refresh_interval_s``). Claims are checked with pyjwt and then as ChittyAuth's Validate
checks them: header ``typ`` ``at+jwt`` and every claim RFC 9068 requires (``iss``, ``exp``,
``aud``, ``sub``, ``client_id``, ``iat``, ``jti``), the date claims (``exp``, ``iat``, ``nbf``)
as numbers, ``iss``, ``aud``, ``exp``/``nbf`` with leeway, and required scopes. A token whose
``iat`` is after its key's ``retire_time`` (plus leeway) is refused: a retired key signs
nothing, so such a token was signed with a stolen key.

Revocations are pushed to the verifier by following ``WatchRevocations``, so a revoked token
is refused as soon as the event arrives, typically well within a second. Every kind is applied:
a token (jti), a session (sid), a refresh family (fam), an API key (the tokens obtained with it
carry ``client_id`` ``apikey:<key id>``) and a client (``client_id``: a deleted client, or a
revoked API key's). A token issued by token exchange (RFC 8693) names what it was derived from
in its ``src`` claim (``{"jti": [...], "sid": [...], "fam": [...], "client_id": [...]}``); it
is refused as soon as any of those is revoked. An event of a kind this verifier does not know
(a newer server) is skipped with a log line; the stream goes on.

The verifier is only as current as its stream. When nothing (event or heartbeat) has been heard
for ``max_stream_silence_s`` it *fails closed*: ``verify`` raises ``VerifierUnavailable``, or,
with ``fallback_to_validate=True``, asks the server with ``Validate`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import jwt

from chitty.auth.claims import REQUIRED_CLAIMS, claims_problem
from chitty.auth.client.aio import AsyncAuthClient
from chitty.auth.client.errors import ChittyAuthError, OutOfRange
from chitty.auth.v1 import auth_service_pb2, token_pb2

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = ("EdDSA", "ES256", "RS256")
_REVOCATION_KINDS = {
    token_pb2.REVOCATION_KIND_TOKEN: "jti",
    token_pb2.REVOCATION_KIND_SESSION: "sid",
    token_pb2.REVOCATION_KIND_REFRESH_FAMILY: "family",
    token_pb2.REVOCATION_KIND_API_KEY: "api_key",
    token_pb2.REVOCATION_KIND_CLIENT: "client",
}

# (revocation kind, claim): a token's own links, and the members of a derived token's ``src``.
_LINKS = (("jti", "jti"), ("sid", "sid"), ("family", "fam"), ("client", "client_id"))
# A token obtained with an API key carries client_id "apikey:<key id>".
_API_KEY_CLIENT_PREFIX = "apikey:"


class TokenRejected(Exception):
    """The token is not good for this resource (RFC 6750 ``error`` code in ``error``).

    Attributes:
        error: ``invalid_token`` or ``insufficient_scope``.
        description: a short, safe explanation (never the token).
    """

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class VerifierUnavailable(Exception):
    """The verifier cannot vouch for revocations now (stream down too long): fail closed."""


@dataclass(frozen=True)
class VerifiedToken:
    """A verified access token's claims."""

    claims: Mapping[str, Any]

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(str(self.claims.get("scope", "")).split())

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id", ""))


class LocalVerifier:
    """Verifies access tokens offline; keep one per process and ``start()`` it.

    Args:
        client: an ``AsyncAuthClient`` whose credentials may watch revocations (a service
            token, or scope ``revocations:read``).
        issuer: the expected ``iss``.
        audience: accepted ``aud`` values (this resource's identifiers).
        leeway_s: clock skew allowed on ``exp``/``nbf``.
        max_stream_silence_s: fail closed after this long without a stream message; must be
            above the server's heartbeat interval (5 s by default).
        fallback_to_validate: when failing closed, call ``Validate`` instead of refusing.
        jwks_refetch_min_interval_s: at most one JWKS refetch per this interval.
        jwks_refresh_interval_s: refetch the JWKS this often anyway, to learn of keys retired
            since (a token signed after its key's retirement is refused).
        clock: monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        client: AsyncAuthClient,
        *,
        issuer: str,
        audience: str | Sequence[str],
        leeway_s: float = 30.0,
        max_stream_silence_s: float = 15.0,
        fallback_to_validate: bool = False,
        jwks_refetch_min_interval_s: float = 30.0,
        jwks_refresh_interval_s: float = 300.0,
        reconnect_backoff_s: tuple[float, float] = (0.1, 2.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.issuer = issuer
        self.audiences = [audience] if isinstance(audience, str) else list(audience)
        self._leeway_s = leeway_s
        self.max_stream_silence_s = max_stream_silence_s
        self._fallback = fallback_to_validate
        self._refetch_interval_s = jwks_refetch_min_interval_s
        self._refresh_interval_s = jwks_refresh_interval_s
        self._backoff = reconnect_backoff_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        # kid -> when the key stopped signing (retired keys only).
        self._retired: dict[str, float] = {}
        self._last_jwks_fetch = float("-inf")
        self._revoked: dict[str, dict[str, float]] = {k: {} for k in _REVOCATION_KINDS.values()}
        self._cursor = ""
        self._last_heard = float("-inf")
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._unknown_kinds: set[int] = set()
        # Observability (and tests): how often the server was asked.
        self.validate_calls = 0
        self.jwks_fetches = 0
        self.stream_connects = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, ready_timeout_s: float = 10.0) -> None:
        """Fetches the JWKS and follows revocations; returns once caught up.

        Raises:
            ChittyAuthError: the JWKS could not be fetched.
            TimeoutError: the revocation stream did not catch up in time.
        """
        await self._fetch_jwks()
        self._task = asyncio.create_task(self._follow(), name="revocation-follower")
        self._refresher = asyncio.create_task(self._refresh_jwks(), name="jwks-refresher")
        await asyncio.wait_for(self._caught_up.wait(), ready_timeout_s)

    async def stop(self) -> None:
        for task in (self._task, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._refresher = None

    @property
    def stream_healthy(self) -> bool:
        """True while the revocation stream has been heard from recently enough."""
        return self._clock() - self._last_heard <= self.max_stream_silence_s

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """Whether the token, its session, family, client or API key, or (for a token issued by
        token exchange) any token, session, family or client it was derived from (its ``src``
        claim) is revoked."""
        now = time.time()
        for kind, claim in _LINKS:
            value = claims.get(claim)
            if value and self._covers(kind, str(value), now):
                return True
        source = claims.get("src")
        if isinstance(source, Mapping):
            for kind, claim in _LINKS:
                values = source.get(claim)
                if isinstance(values, list) and any(
                    self._covers(kind, str(value), now) for value in values if value
                ):
                    return True
        return False

    def _covers(self, kind: str, value: str, now: float) -> bool:
        if self._revoked[kind].get(value, 0.0) > now:
            return True
        # An API key revoked (by any path) takes every token obtained with it along.
        return (
            kind == "client"
            and value.startswith(_API_KEY_CLIENT_PREFIX)
            and self._revoked["api_key"].get(value[len(_API_KEY_CLIENT_PREFIX) :], 0.0) > now
        )

    # -- verification ---------------------------------------------------------------------

    async def verify(self, token: str, *, required_scopes: Iterable[str] = ()) -> VerifiedToken:
        """The token's claims when it is good for this resource now.

        Raises:
            TokenRejected: invalid_token (bad signature, expired, wrong iss/aud/typ, revoked)
                or insufficient_scope.
            VerifierUnavailable: the revocation stream is down beyond the bound and there is
                no fallback.
        """
        required = [s for s in required_scopes if s]
        if not self.stream_healthy:
            if not self._fallback:
                raise VerifierUnavailable("revocation stream is down; refusing to verify")
            return await self._validate_remotely(token, required)
        claims = await self._decode(token)
        if self.is_revoked(claims):
            raise TokenRejected("invalid_token", "the token has been revoked")
        granted = set(str(claims.get("scope", "")).split())
        missing = [s for s in required if s not in granted]
        if missing:
            raise TokenRejected("insufficient_scope", f"requires scope {' '.join(missing)}")
        return VerifiedToken(claims)

    async def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected("invalid_token", "the token is malformed") from exc
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise TokenRejected("invalid_token", "not an access token (typ)")
        kid = str(header.get("kid", ""))
        key = self._keys.get(kid)
        if key is None and await self._refetch_for_unknown_kid():
            key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("invalid_token", "signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=self._leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("invalid_token", "the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(
                "invalid_token", f"the token is not valid: {type(exc).__name__}"
            ) from exc
        problem = claims_problem(claims)
        if problem:
            raise TokenRejected("invalid_token", f"the token is malformed: {problem}")
        retired = self._retired.get(kid)
        if retired is not None and float(claims["iat"]) > retired + self._leeway_s:
            raise TokenRejected("invalid_token", "issued after its signing key was retired")
        return claims

    async def _validate_remotely(self, token: str, required: list[str]) -> VerifiedToken:
        self.validate_calls += 1
        reply = await self._client.validate(
            auth_service_pb2.ValidateRequest(token=token, audience=self.audiences[0])
        )
        if not reply.active:
            raise TokenRejected("invalid_token", "the token is not active")
        granted = set(reply.claims.scopes)
        missing = [s for s in required if s not in granted]
        if missing:
            raise TokenRejected("insufficient_scope", f"requires scope {' '.join(missing)}")
        claims = {
            "sub": reply.claims.sub,
            "client_id": reply.claims.client_id,
            "scope": " ".join(reply.claims.scopes),
            "jti": reply.claims.jti,
            "sid": reply.claims.sid,
        }
        return VerifiedToken(claims)

    # -- JWKS -----------------------------------------------------------------------------

    async def _fetch_jwks(self) -> None:
        reply = await self._client.get_jwks(auth_service_pb2.GetJwksRequest())
        self.jwks_fetches += 1
        self._last_jwks_fetch = self._clock()
        keys: dict[str, jwt.PyJWK] = {}
        retired: dict[str, float] = {}
        for jwk in reply.keys:
            if jwk.alg not in ASYMMETRIC_ALGORITHMS:
                continue  # symmetric keys are never published; nothing else is trusted
            data = {
                f.name: getattr(jwk, f.name)
                for f in jwk.DESCRIPTOR.fields
                if f.type == f.TYPE_STRING and getattr(jwk, f.name)
            }
            try:
                keys[jwk.kid] = jwt.PyJWK(data, algorithm=jwk.alg)
            except jwt.PyJWTError:
                log.warning("skipping an unusable JWK", extra={"kid": jwk.kid})
                continue
            if jwk.HasField("retire_time"):
                retired[jwk.kid] = jwk.retire_time.seconds + jwk.retire_time.nanos / 1e9
        self._keys, self._retired = keys, retired

    async def _refresh_jwks(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval_s)
            try:
                await self._fetch_jwks()
            except (ChittyAuthError, grpc.RpcError):
                log.warning("JWKS refresh failed; keeping the keys already known", exc_info=True)

    async def _refetch_for_unknown_kid(self) -> bool:
        # Rate-limited, so a flood of tokens with made-up kids cannot flood the server.
        if self._clock() - self._last_jwks_fetch < self._refetch_interval_s:
            return False
        try:
            await self._fetch_jwks()
        except ChittyAuthError:
            log.warning("JWKS refetch failed", exc_info=True)
            return False
        return True

    # -- revocation stream ----------------------------------------------------------------

    async def _follow(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                await self._follow_once()
                delay = self._backoff[0]  # the server ended the stream cleanly: reconnect
            except OutOfRange:
                log.warning("revocation cursor expired; re-reading every revocation in force")
                self._cursor = ""
            except (ChittyAuthError, grpc.RpcError):
                log.info("revocation stream interrupted; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _follow_once(self) -> None:
        self.stream_connects += 1
        stream = self._client.watch_revocations(
            auth_service_pb2.WatchRevocationsRequest(cursor=self._cursor)
        )
        async with contextlib.aclosing(stream):
            async for message in stream:
                self._last_heard = self._clock()
                if message.HasField("event"):
                    self._apply(message.event)
                else:
                    self._cursor = message.cursor
                    self._caught_up.set()
                    self._prune()

    def _apply(self, event: token_pb2.RevocationEvent) -> None:
        kind = _REVOCATION_KINDS.get(event.kind)
        if kind is None:
            # A newer server's kind: skipping it beats dropping the stream over it.
            if event.kind not in self._unknown_kinds:
                self._unknown_kinds.add(event.kind)
                log.warning(
                    "skipping revocations of a kind this verifier does not know",
                    extra={"revocation_kind": int(event.kind)},
                )
            if event.cursor:
                self._cursor = event.cursor
            return
        until = event.expire_time.seconds + event.expire_time.nanos / 1e9
        bucket = self._revoked[kind]
        if bucket.get(event.value, 0.0) < until:
            bucket[event.value] = until
        if event.cursor:
            self._cursor = event.cursor

    def _prune(self) -> None:
        now = time.time()
        for bucket in self._revoked.values():
            for value in [v for v, until in bucket.items() if until <= now]:
                del bucket[value]
