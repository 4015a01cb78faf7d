"""Access tokens in the RFC 9068 profile: issuing, validating, revoking.

Validation is the hot path and does no I/O: a bounded cache remembers tokens whose signature
already verified (expiry and revocation are still checked on every call), and revocation is a
set lookup (``RevocationSets``). Issuing signs with the key ring's active key and writes a
bookkeeping row in the caller's transaction, so the caller's audit record commits with it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import jwt
from jwt.algorithms import get_default_algorithms

from chitty.auth.claims import REQUIRED_CLAIMS, claims_problem
from chittyauth.clock import Clock
from chittyauth.config import TokenConfig
from chittyauth.domain import ids
from chittyauth.domain.errors import InvalidRequest, Unauthenticated
from chittyauth.domain.policy import API_KEY_CLIENT_PREFIX
from chittyauth.domain.principal import Principal
from chittyauth.domain.revocation import CHANGE_KIND, RevocationSets
from chittyauth.store import tokens as token_rows
from chittyauth.store.sqlite import SqliteTransaction

log = logging.getLogger(__name__)

TOKEN_USES = ("portal", "linked_app", "mcp_server", "service", "exchange", "user")
JWT_TYPES = ("at+jwt", "application/at+jwt")
API_KEY_PREFIX = "sk_live_"
REFRESH_TOKEN_PREFIX = "rt_"

# Claims that only the service sets; caller-supplied extra claims may not name them.
RESERVED_CLAIMS = frozenset(
    {
        "iss", "sub", "aud", "client_id", "scope", "iat", "exp", "nbf", "jti", "sid",
        "token_use", "chitty_id", "server_id", "capabilities", "act", "fam", "auth_time",
        "acr", "amr", "cnf", "azp", "typ", "kid", "may_act", "src",
    }
)  # fmt: skip
MAX_EXTRA_CLAIMS_BYTES = 4096
# A token issued by token exchange names the tokens it was derived from in this claim:
# ``{"jti": [...], "sid": [...], "fam": [...], "client_id": [...]}``, the subject token's own
# ids and those its own ``src`` named, so revoking any token, session, family or client up the
# chain revokes it too.
SOURCE_CLAIM = "src"
# src member -> revocation kind (``RevocationSets``).
SOURCE_KINDS = {"jti": "jti", "sid": "sid", "fam": "family", "client_id": "client"}


class SigningKeyLike(Protocol):
    @property
    def kid(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    @property
    def key(self) -> Any: ...


class VerifyingKeyLike(SigningKeyLike, Protocol):
    @property
    def retire_time(self) -> float | None:
        """When the key stopped signing; None while it signs or waits to."""
        ...


class KeySource(Protocol):
    """What the token service needs of the key ring (in memory)."""

    def signer(self) -> SigningKeyLike: ...

    def verifier(self, kid: str) -> VerifyingKeyLike | None: ...


class ApiKeySource(Protocol):
    """What the token service needs of the API key registry (in memory)."""

    def check(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token."""

    token: str
    jti: str
    issued_at: float
    expires_at: float
    scopes: tuple[str, ...]
    claims: Mapping[str, Any]


class MintedToken(NamedTuple):
    """A signed access token and the row that records it (see ``TokenService.mint``)."""

    issued: IssuedToken
    row: token_rows.TokenRow


@dataclass(frozen=True, slots=True)
class Validation:
    """The answer of Validate: active with claims, or inactive with a reason."""

    active: bool
    reason: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)
    # access_token | api_key | refresh_token | "" (not recognised)
    kind: str = ""


class _Verified:
    """A token whose signature and issuer were verified; the rest is checked per call."""

    __slots__ = (
        "active", "api_key_id", "audiences", "claims", "client_id", "exp", "family", "jti",
        "not_before", "scopes", "sid", "sources", "token_use",
    )  # fmt: skip

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.exp = float(claims["exp"])
        self.not_before = float(claims.get("nbf", claims.get("iat", 0)))
        self.jti = str(claims.get("jti", ""))
        self.sid = str(claims.get("sid", ""))
        self.family = str(claims.get("fam", ""))
        self.client_id = str(claims.get("client_id", ""))
        # The API key a token was obtained with, "" for any other token.
        self.api_key_id = self.client_id.removeprefix(API_KEY_CLIENT_PREFIX)
        if self.api_key_id == self.client_id:
            self.api_key_id = ""
        self.token_use = str(claims.get("token_use", ""))
        aud = claims.get("aud", ())
        self.audiences = (aud,) if isinstance(aud, str) else tuple(str(a) for a in aud)
        self.scopes = frozenset(str(claims.get("scope", "")).split())
        # (revocation kind, id) of every token a derived token depends on; () for most tokens.
        self.sources = source_links(claims)
        # The answer while the checks pass, built once (answers are immutable).
        self.active = Validation(True, "", claims, "access_token")


_ALGORITHMS = get_default_algorithms()


@functools.lru_cache(maxsize=64)
def _header_segment(algorithm: str, kid: str) -> bytes:
    # What jwt.encode writes for these headers (sorted keys, compact), computed once per key.
    header = {"alg": algorithm, "kid": kid, "typ": "at+jwt"}
    return _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _sign(claims: Mapping[str, Any], signer: SigningKeyLike) -> str:
    """The same compact JWS as ``jwt.encode(claims, key, alg, headers={kid, typ})``, without
    re-encoding the constant header and re-resolving the algorithm on every token."""
    signing_input = (
        _header_segment(signer.algorithm, signer.kid)
        + b"."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    algorithm = _ALGORITHMS[signer.algorithm]
    signature = algorithm.sign(signing_input, algorithm.prepare_key(signer.key))
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def source_links(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(revocation kind, id) pairs of the ``src`` claim of a derived token; () without one."""
    source = claims.get(SOURCE_CLAIM)
    if not isinstance(source, Mapping):
        return ()
    links: list[tuple[str, str]] = []
    for member, kind in SOURCE_KINDS.items():
        values = source.get(member, ())
        if isinstance(values, list):
            links.extend((kind, str(value)) for value in values if value)
    return tuple(links)


def exchange_source(subject: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ``src`` claim of a token derived from a token with claims ``subject``: its jti, sid,
    fam and client_id, and every id its own ``src`` names (a chain dies with any link)."""
    prior = subject.get(SOURCE_CLAIM)
    prior = prior if isinstance(prior, Mapping) else {}
    source: dict[str, list[str]] = {}
    for member in SOURCE_KINDS:
        inherited = prior.get(member, ())
        values = [str(v) for v in inherited if v] if isinstance(inherited, list) else []
        if subject.get(member):
            values.append(str(subject[member]))
        if values:
            source[member] = list(dict.fromkeys(values))
    return source


def _inactive(reason: str, kind: str = "access_token") -> Validation:
    return Validation(False, reason, {}, kind)


class TokenService:
    """Issues and validates access tokens; the principal resolver of every RPC."""

    def __init__(
        self,
        config: TokenConfig,
        keys: KeySource,
        clock: Clock,
        revocations: RevocationSets | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.clock = clock
        self.revocations = revocations or RevocationSets()
        self.api_keys: ApiKeySource | None = None
        self._cache: dict[str, _Verified] = {}
        self._cache_size = max(1, config.verified_cache_size)

    # -- issuing --------------------------------------------------------------------------

    def ttl_for(self, token_use: str) -> int:
        ttl = {
            "portal": self.config.portal_ttl_s,
            "mcp_server": self.config.mcp_server_ttl_s,
            "service": self.config.service_ttl_s,
        }.get(token_use, self.config.access_ttl_s)
        return ttl

    def mint(
        self,
        *,
        subject: str,
        client_id: str,
        token_use: str,
        scopes: Sequence[str],
        audience: Sequence[str] = (),
        session_id: str = "",
        chitty_id: str = "",
        ttl_s: int | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        server_id: str = "",
        capabilities: Sequence[str] = (),
        act: Mapping[str, Any] | None = None,
        family_id: str = "",
        source: Mapping[str, Sequence[str]] | None = None,
        may_act: Mapping[str, str] | None = None,
    ) -> MintedToken:
        """Signs an access token; ``record`` stores it in a write transaction, where the
        caller audits it too. Minting needs no transaction: a caller that signs before
        opening one keeps the signature's work out of the time the write lock is held.

        ``act`` (RFC 8693 §4.1, nested for a chain of actors), ``source`` (the ``src`` claim
        of a token derived by exchange) and ``may_act`` (RFC 8693 §4.4) are set only here,
        never through ``extra_claims``.

        Raises:
            InvalidRequest: an unknown token use, a bad lifetime, or extra claims that name a
                reserved claim or are too large.
            Unavailable: no active signing key (fail closed).
        """
        if token_use not in TOKEN_USES:
            raise InvalidRequest(f"unknown token use {token_use!r}")
        ttl = self.ttl_for(token_use) if ttl_s is None else ttl_s
        # Never beyond the longest configured lifetime: a retired signing key is deleted once
        # that much time has passed, and a token must not outlive its key.
        longest = self.max_lifetime()
        if not 0 < ttl <= longest:
            raise InvalidRequest(f"token lifetime must be between 1 s and {longest} s")
        extra = _checked_extra_claims(extra_claims)
        signer = self.keys.signer()
        issued_at = int(self.clock.now())
        jti = ids.new_id("at", 16)
        claims: dict[str, Any] = {
            **extra,
            "iss": self.config.issuer,
            "sub": subject,
            "aud": list(audience) if len(audience) != 1 else audience[0],
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": issued_at,
            "exp": issued_at + ttl,
            "jti": jti,
            "token_use": token_use,
        }
        if not audience:
            claims["aud"] = self.config.issuer
        optional = {
            "sid": session_id,
            "chitty_id": chitty_id,
            "server_id": server_id,
            "fam": family_id,
        }
        claims.update({name: value for name, value in optional.items() if value})
        if capabilities:
            claims["capabilities"] = list(capabilities)
        if act:
            claims["act"] = dict(act)
        if source:
            claims[SOURCE_CLAIM] = {member: list(ids) for member, ids in source.items()}
        if may_act:
            claims["may_act"] = dict(may_act)
        token = _sign(claims, signer)
        row = token_rows.TokenRow(
            jti=jti,
            subject=subject,
            client_id=client_id,
            token_use=token_use,
            session_id=session_id,
            family_id=family_id,
            kid=signer.kid,
            issued_at=issued_at,
            expires_at=issued_at + ttl,
        )
        issued = IssuedToken(token, jti, issued_at, issued_at + ttl, tuple(scopes), claims)
        return MintedToken(issued, row)

    async def record(self, tx: SqliteTransaction, minted: MintedToken) -> IssuedToken:
        """Records a minted token in ``tx``; the caller audits it there too."""
        await token_rows.insert_token(tx, minted.row)
        return minted.issued

    async def issue(self, tx: SqliteTransaction, **fields: Any) -> IssuedToken:
        """``record(tx, mint(**fields))`` in one step (``mint`` names the fields)."""
        return await self.record(tx, self.mint(**fields))

    # -- validating -----------------------------------------------------------------------

    def validate(
        self,
        token: str,
        *,
        audience: str = "",
        required_scopes: Sequence[str] = (),
        token_use: str = "",
    ) -> Validation:
        """Checks any credential ChittyAuth issues; never raises for a bad token."""
        if not token or len(token) > self.config.max_token_bytes:
            return _inactive("MALFORMED", "")
        if token.startswith(API_KEY_PREFIX):
            return self._validate_api_key(token, required_scopes, token_use)
        if token.startswith(REFRESH_TOKEN_PREFIX):
            # Refresh tokens are credentials for the token endpoint only.
            return _inactive("WRONG_TOKEN_USE", "refresh_token")
        verified = self._cache.get(token)
        if verified is None:
            outcome = self._verify_signature(token)
            if isinstance(outcome, Validation):
                return outcome
            verified = outcome
            if len(self._cache) >= self._cache_size:
                # Evict the oldest entry (dicts keep insertion order).
                del self._cache[next(iter(self._cache))]
            self._cache[token] = verified
        return self._check(verified, audience, required_scopes, token_use)

    def _check(
        self,
        verified: _Verified,
        audience: str,
        required_scopes: Sequence[str],
        token_use: str,
    ) -> Validation:
        revoked = self.revocations
        if (
            verified.jti in revoked.jti
            or (verified.sid and verified.sid in revoked.sid)
            or (verified.family and verified.family in revoked.family)
            or (verified.client_id and verified.client_id in revoked.client)
            or (verified.api_key_id and verified.api_key_id in revoked.api_key)
            or (verified.sources and revoked.any_of(verified.sources))
        ):
            return _inactive("REVOKED")
        now = self.clock.now()
        leeway = self.config.leeway_s
        if now > verified.exp + leeway:
            return _inactive("EXPIRED")
        if verified.not_before > now + leeway:
            return _inactive("NOT_YET_VALID")
        if audience and audience not in verified.audiences:
            return _inactive("WRONG_AUDIENCE")
        if required_scopes and not verified.scopes.issuperset(required_scopes):
            return _inactive("INSUFFICIENT_SCOPE")
        if token_use and token_use != verified.token_use:
            return _inactive("WRONG_TOKEN_USE")
        return verified.active

    def _verify_signature(self, token: str) -> _Verified | Validation:
        header = _header(token)
        if header is None:
            return _inactive("MALFORMED", "")
        if str(header.get("typ", "")).lower() not in JWT_TYPES:
            return _inactive("MALFORMED")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return _inactive("UNKNOWN_KEY")
        key = self.keys.verifier(kid)
        if key is None:
            return _inactive("UNKNOWN_KEY")
        if header.get("alg") != key.algorithm:
            # Covers `alg: none` and HS256 signed with a public key as the secret.
            return _inactive("BAD_SIGNATURE")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": list(REQUIRED_CLAIMS),
                },
            )
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.InvalidAlgorithmError):
            return _inactive("BAD_SIGNATURE")
        except jwt.PyJWTError:
            return _inactive("MALFORMED")
        if claims.get("iss") != self.config.issuer:
            return _inactive("WRONG_ISSUER")
        if claims_problem(claims):
            # RFC 9068 claims missing, or a string exp that float() would have accepted.
            return _inactive("MALFORMED")
        retired = key.retire_time
        if retired is not None and claims["iat"] > retired + self.config.leeway_s:
            # A retired key signs nothing: this token was made with a stolen key.
            return _inactive("BAD_SIGNATURE")
        try:
            return _Verified(claims)
        except (TypeError, ValueError, KeyError):
            return _inactive("MALFORMED")

    def _validate_api_key(
        self, key: str, required_scopes: Sequence[str], token_use: str
    ) -> Validation:
        if self.api_keys is None:
            return _inactive("UNKNOWN_CREDENTIAL", "api_key")
        record = self.api_keys.check(key)
        if record is None:
            return _inactive("UNKNOWN_CREDENTIAL", "api_key")
        if record.key_id in self.revocations.api_key or record.revoked:
            return _inactive("REVOKED", "api_key")
        now = self.clock.now()
        if record.expires_at and now > record.expires_at:
            return _inactive("EXPIRED", "api_key")
        scopes = frozenset(record.scopes)
        if required_scopes and not scopes.issuperset(required_scopes):
            return _inactive("INSUFFICIENT_SCOPE", "api_key")
        if token_use and token_use != "service":
            return _inactive("WRONG_TOKEN_USE", "api_key")
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": record.chitty_id,
            "chitty_id": record.chitty_id,
            "client_id": f"apikey:{record.key_id}",
            "scope": " ".join(record.scopes),
            "jti": record.key_id,
            "iat": int(record.created_at),
            "token_use": "service",
        }
        if record.expires_at:
            claims["exp"] = int(record.expires_at)
        return Validation(True, "", claims, "api_key")

    def principal_for(self, bearer: str) -> Principal:
        """The caller behind a bearer credential (access token or API key)."""
        result = self.validate(bearer)
        if not result.active:
            raise Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN")
        return principal_from_claims(result.claims)

    # -- revoking -------------------------------------------------------------------------

    async def revoke(self, tx: SqliteTransaction, kind: str, value: str, until: float) -> bool:
        """Records a revocation in ``tx``; it applies in memory the moment ``tx`` commits.

        Returns:
            False when the same revocation was already recorded.
        """
        fresh = await token_rows.upsert_revocation(tx, kind, value, until)
        await tx.append_change(
            CHANGE_KIND, f"{kind}:{value}", {"kind": kind, "value": value, "until": until}
        )
        tx.on_commit(lambda: self.revocations.add(kind, value, until))
        return fresh

    async def revoke_jti(self, tx: SqliteTransaction, jti: str, until: float) -> bool:
        return await self.revoke(tx, "jti", jti, until)

    async def revoke_session(self, tx: SqliteTransaction, session_id: str, until: float) -> bool:
        return await self.revoke(tx, "sid", session_id, until)

    async def revoke_family(self, tx: SqliteTransaction, family_id: str, until: float) -> bool:
        return await self.revoke(tx, "family", family_id, until)

    def max_lifetime(self) -> int:
        """The longest any access token lives; revocations older than this can be forgotten."""
        return max(
            self.config.access_ttl_s,
            self.config.portal_ttl_s,
            self.config.mcp_server_ttl_s,
            self.config.service_ttl_s,
        )

    def signed_claims(self, token: str) -> Mapping[str, Any] | None:
        """The claims of a token we signed (however expired or revoked), else None."""
        if len(token) > self.config.max_token_bytes:
            return None
        cached = self._cache.get(token)
        if cached is not None:
            return cached.claims
        outcome = self._verify_signature(token)
        return None if isinstance(outcome, Validation) else outcome.claims


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    aud = claims.get("aud", ())
    act = claims.get("act")
    return Principal(
        subject=str(claims.get("sub", "")),
        client_id=str(claims.get("client_id", "")),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        token_use=str(claims.get("token_use", "")),
        session_id=str(claims.get("sid", "")),
        chitty_id=str(claims.get("chitty_id", "")),
        jti=str(claims.get("jti", "")),
        audiences=(aud,) if isinstance(aud, str) else tuple(str(a) for a in aud),
        actor=str(act.get("sub", "")) if isinstance(act, Mapping) else "",
    )


def _header(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    encoded = parts[0]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) else None


def _checked_extra_claims(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    reserved = sorted(set(extra) & RESERVED_CLAIMS)
    if reserved:
        raise InvalidRequest(
            f"extra claims may not set reserved claims: {', '.join(reserved)}",
            reason="RESERVED_CLAIM",
            metadata={"claims": ",".join(reserved)},
        )
    try:
        size = len(json.dumps(dict(extra), separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("extra claims must be JSON values") from exc
    if size > MAX_EXTRA_CLAIMS_BYTES:
        raise InvalidRequest(f"extra claims are larger than {MAX_EXTRA_CLAIMS_BYTES} bytes")
    return dict(extra)
