"""Signing keys: one ring per algorithm, each key moving next -> active -> retired -> deleted.

A ``next`` key is published in the JWKS before it signs, so a verifier that caches the JWKS
already knows the kid of every token it meets. A retired key stops signing but keeps
verifying until the last token it can have signed has expired; then it is deleted.

The token service uses the in-memory side on its hot path (``signer``, ``verifier``,
``jwks``: no I/O). Every change goes through one store transaction together with its audit
record and a ``key.changed`` change-log entry; each process reloads its ring from the change
feed, so a rotation made by another process or the CLI reaches every process.

Private key material is sealed at rest with AES-256-GCM under a key-encryption key (KEK) from
``keys.encryption_key``; see ``key_encryption_key`` for development mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from chittyauth.clock import Clock
from chittyauth.config import Config, KeyConfig
from chittyauth.domain import policy
from chittyauth.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidRequest,
    Unavailable,
)
from chittyauth.domain.ids import new_id
from chittyauth.domain.principal import Principal
from chittyauth.store import keys as key_rows
from chittyauth.store.protocol import AuditRecord, Change
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "EdDSA", "RS256", "HS256")
# NIST SP 800-57 asks for 3072-bit RSA for use beyond 2030; RS256 is not the default anyway.
RSA_KEY_BITS = 3072
HS256_SECRET_BYTES = 32
CHANGE_KIND = "key.changed"
CHANGE_PREFIX = "key."
KEY_ADMIN_SCOPE = "keys:admin"
SYSTEM_ACTOR = "system"
_NONCE_BYTES = 12
_JWK_MEMBERS = ("kty", "crv", "x", "y", "n", "e")

# Development only: a fixed, publicly known KEK so a local database survives restarts without
# set-up. It protects nothing; production mode refuses to start without a real key.
DEV_KEY_ENCRYPTION_KEY = hashlib.sha256(
    b"chittyauth development key-encryption key - public, never for production"
).digest()
_dev_kek_warned = False


class KeyEncryptionKeyError(FailedPrecondition):
    """``keys.encryption_key`` is missing, malformed or not the key that sealed the keys.

    Raised while the server starts (``Server.start`` -> ``serve`` logs it and exits 1) and by
    the key commands of the CLI (exit 2).
    """

    reason = "KEY_ENCRYPTION_KEY_INVALID"


def key_encryption_key(config: KeyConfig, *, production: bool) -> bytes:
    """The 256-bit KEK from ``keys.encryption_key``.

    In development an empty setting yields ``DEV_KEY_ENCRYPTION_KEY`` (with a warning, logged
    once per process).

    Raises:
        KeyEncryptionKeyError: the setting is malformed, or empty (or the development key) in
            production mode.
    """
    text = config.encryption_key.strip()
    if not text:
        if production:
            raise KeyEncryptionKeyError(
                "keys.encryption_key (CHITTYAUTH_KEYS__ENCRYPTION_KEY) must be set to 64 hex"
                " characters in production mode"
            )
        _warn_dev_kek()
        return DEV_KEY_ENCRYPTION_KEY
    try:
        kek = bytes.fromhex(text)
    except ValueError:
        kek = b""
    if len(kek) != 32:
        raise KeyEncryptionKeyError("keys.encryption_key must be 64 hex characters (256 bits)")
    if production and secrets.compare_digest(kek, DEV_KEY_ENCRYPTION_KEY):
        raise KeyEncryptionKeyError("keys.encryption_key is the public development key")
    return kek


def _warn_dev_kek() -> None:
    global _dev_kek_warned
    if not _dev_kek_warned:
        _dev_kek_warned = True
        log.warning(
            "keys.encryption_key is not set: signing keys are sealed with the public"
            " development key (development mode only)"
        )


class KeySealer:
    """AES-256-GCM sealing of key material; the kid is the associated data."""

    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(kek)

    def seal(self, kid: str, material: bytes) -> bytes:
        """``nonce || ciphertext || tag`` for ``material``, bound to ``kid``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, material, kid.encode("utf-8"))

    def unseal(self, kid: str, sealed: bytes) -> bytes:
        """The material sealed for ``kid``.

        Raises:
            KeyEncryptionKeyError: the KEK is not the one that sealed it, or the row was
                altered (or moved to another kid).
        """
        try:
            return self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], kid.encode("utf-8")
            )
        except (InvalidTag, ValueError) as exc:
            raise KeyEncryptionKeyError(
                f"cannot unseal signing key {kid}: keys.encryption_key is not the key that"
                " sealed it, or the stored key was altered"
            ) from exc


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key that signs: a private key object (or the HS256 secret bytes) for pyjwt."""

    kid: str
    algorithm: str
    key: Any


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key that verifies: a public key object (or the HS256 secret bytes) for pyjwt."""

    kid: str
    algorithm: str
    key: Any
    # When it stopped signing (retired keys): a token it signed with a later iat is forged.
    retire_time: float | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's metadata, never its material."""

    kid: str
    algorithm: str
    # next | active | retired
    state: str
    create_time: float
    # For a next key: when it is planned to start signing.
    activate_time: float | None = None
    retire_time: float | None = None
    delete_time: float | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    """What one rotation did."""

    active: KeyInfo
    next: KeyInfo
    retired: KeyInfo | None


@dataclass(frozen=True, slots=True)
class _Material:
    private: Any
    public: Any
    jwk: Mapping[str, str] | None


@dataclass(frozen=True)
class _Snapshot:
    """The ring as last loaded; replaced whole so readers never see a half-made one."""

    infos: tuple[KeyInfo, ...] = ()
    signers: Mapping[str, SigningKey] = field(default_factory=dict)
    verifiers: Mapping[str, VerificationKey] = field(default_factory=dict)
    jwks: tuple[Mapping[str, str], ...] = ()

    def live(self, algorithm: str, state: str) -> KeyInfo | None:
        for info in self.infos:
            if info.algorithm == algorithm and info.state == state:
                return info
        return None


def generate_material(algorithm: str) -> bytes:
    """New private material: PKCS#8 DER for asymmetric keys, 32 random bytes for HS256."""
    if algorithm == "HS256":
        return secrets.token_bytes(HS256_SECRET_BYTES)
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    else:
        raise InvalidRequest(f"unsupported algorithm {algorithm!r}", reason="UNSUPPORTED_ALGORITHM")
    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_jwk(kid: str, algorithm: str, public_key: Any) -> dict[str, str]:
    """The public JWK (RFC 7517; RFC 7518 §6 for EC and RSA, RFC 8037 for OKP) of a key."""
    if algorithm == "ES256":
        raw = ECAlgorithm.to_jwk(public_key, as_dict=True)
    elif algorithm == "EdDSA":
        raw = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    elif algorithm == "RS256":
        raw = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        raise InvalidRequest(f"{algorithm} keys are never published")
    jwk = {name: str(raw[name]) for name in _JWK_MEMBERS if name in raw}
    return {**jwk, "kid": kid, "use": "sig", "alg": algorithm}


def _parse(kid: str, algorithm: str, material: bytes) -> _Material:
    if algorithm == "HS256":
        if len(material) < HS256_SECRET_BYTES:
            raise KeyEncryptionKeyError(f"signing key {kid} holds a short HS256 secret")
        return _Material(material, material, None)
    private = serialization.load_der_private_key(material, password=None)
    expected = {
        "ES256": ec.EllipticCurvePrivateKey,
        "EdDSA": ed25519.Ed25519PrivateKey,
        "RS256": rsa.RSAPrivateKey,
    }[algorithm]
    if not isinstance(private, expected) or (
        isinstance(private, ec.EllipticCurvePrivateKey)
        and not isinstance(private.curve, ec.SECP256R1)
    ):
        raise KeyEncryptionKeyError(f"signing key {kid} does not hold an {algorithm} key")
    public = private.public_key()
    return _Material(private, public, public_jwk(kid, algorithm, public))


def require_key_admin(principal: Principal) -> None:
    """Raises PermissionDenied unless the caller holds chittyauth:admin or keys:admin."""
    policy.require_scope(principal, KEY_ADMIN_SCOPE)


class _Fresh:
    """Key material made before a transaction (RSA takes a while) and handed out inside it."""

    def __init__(self, algorithm: str, pool: list[bytes]) -> None:
        self.algorithm = algorithm
        self._pool = pool

    @classmethod
    async def make(cls, algorithm: str, count: int) -> _Fresh:
        pool = [await asyncio.to_thread(generate_material, algorithm) for _ in range(count)]
        return cls(algorithm, pool)

    async def take(self) -> bytes:
        if self._pool:
            return self._pool.pop()
        # Another writer changed the ring since we looked: make one more, rarely.
        return await asyncio.to_thread(generate_material, self.algorithm)


class KeyRing:
    """Every signing key, in memory for the token service, durable in the store."""

    def __init__(self, store: SqliteStore, clock: Clock, config: Config) -> None:
        """Checks the KEK at once, so a bad one stops start-up.

        Raises:
            KeyEncryptionKeyError: see ``key_encryption_key``.
        """
        self._store = store
        self._clock = clock
        self._keys = config.keys
        self._tokens = config.tokens
        self._sealer = KeySealer(key_encryption_key(config.keys, production=config.is_production))
        self._material: dict[str, _Material] = {}
        self._snapshot = _Snapshot()

    @property
    def algorithm(self) -> str:
        """The algorithm new tokens are signed with."""
        return self._keys.algorithm

    @property
    def max_token_lifetime_s(self) -> int:
        """The longest lifetime of a token signed with these keys (sets retired keys' life)."""
        t = self._tokens
        return max(t.access_ttl_s, t.portal_ttl_s, t.mcp_server_ttl_s, t.service_ttl_s)

    # -- the hot path: memory only ------------------------------------------------------------

    def signer(self, algorithm: str | None = None) -> SigningKey:
        """The active key of ``algorithm`` (default: the signing algorithm).

        Raises:
            Unavailable: there is none; nothing is signed rather than signed badly.
        """
        key = self._snapshot.signers.get(algorithm or self._keys.algorithm)
        if key is None:
            raise Unavailable("no active signing key", reason="NO_SIGNING_KEY")
        return key

    def verifier(self, kid: str) -> VerificationKey | None:
        """The key that verifies tokens with ``kid`` (next, active or retired), if known."""
        return self._snapshot.verifiers.get(kid)

    def jwks(self) -> list[dict[str, str]]:
        """Public JWKs of every next, active and retired asymmetric key (HS256 never)."""
        return [dict(jwk) for jwk in self._snapshot.jwks]

    def infos(self) -> tuple[KeyInfo, ...]:
        """Metadata of every loaded key, newest first."""
        return self._snapshot.infos

    # -- loading ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Reads every key from the store and replaces the in-memory ring.

        Raises:
            KeyEncryptionKeyError: a key cannot be unsealed with the configured KEK.
        """
        async with self._store.read() as reader:
            rows = await key_rows.list_keys(reader)
        material = {row.kid: self._material.get(row.kid) or self._unseal(row) for row in rows}
        signers: dict[str, SigningKey] = {}
        verifiers: dict[str, VerificationKey] = {}
        jwks: list[Mapping[str, str]] = []
        for row in rows:
            found = material[row.kid]
            verifiers[row.kid] = VerificationKey(
                row.kid, row.algorithm, found.public, row.retire_time
            )
            if row.state == "active":
                signers[row.algorithm] = SigningKey(row.kid, row.algorithm, found.private)
            if found.jwk is not None:
                jwks.append(found.jwk)
        self._material = material
        self._snapshot = _Snapshot(
            infos=tuple(_info(row) for row in rows),
            signers=signers,
            verifiers=verifiers,
            jwks=tuple(jwks),
        )

    async def on_changes(self, changes: Sequence[Change]) -> None:
        """Change-feed subscriber for ``key.``: reloads; never raises into the feed."""
        try:
            await self.load()
        except Exception:  # a failed reload keeps the previous ring; the schedule retries
            log.exception("reloading signing keys failed")

    def _unseal(self, row: key_rows.KeyRow) -> _Material:
        return _parse(row.kid, row.algorithm, self._sealer.unseal(row.kid, row.sealed_key))

    # -- changes ------------------------------------------------------------------------------

    async def ensure_keys(self, *, actor: str = SYSTEM_ACTOR, request_id: str = "") -> bool:
        """Makes sure the signing algorithm has an active and a next key; True if it made any.

        A first active key signs at once. On a fresh database no token exists yet, so no
        verifier holds a stale JWKS; after a change of ``keys.algorithm`` verifiers meet the new
        ring's kid unannounced and must refetch the JWKS (as after an on-demand rotation).
        """
        algorithm = self._keys.algorithm
        snapshot = self._snapshot
        if snapshot.live(algorithm, "active") and snapshot.live(algorithm, "next"):
            return False
        fresh = await _Fresh.make(algorithm, 2 if not snapshot.live(algorithm, "next") else 1)
        async with self._store.transaction() as tx:
            live = {
                state: _info(row)
                for state, row in (await key_rows.live_keys(tx, algorithm)).items()
            }
            active, upcoming = live.get("active"), live.get("next")
            made = not (active and upcoming)
            if active is None:
                if upcoming is not None:
                    # The published next key is the safest one to start signing with.
                    await key_rows.activate(tx, upcoming.kid, tx.now)
                    active = replace(upcoming, state="active", activate_time=tx.now)
                    upcoming = None
                    await self._record(
                        tx, "key.rotated", active, actor, request_id, trigger="ensure"
                    )
                else:
                    active = await self._create(tx, fresh, "active", tx.now, actor, request_id)
            if upcoming is None:
                planned = self._planned_activation(active.activate_time or tx.now, tx.now)
                await self._create(tx, fresh, "next", planned, actor, request_id)
        await self.load()  # also when another process made the keys first
        return made

    async def rotate(
        self,
        algorithm: str | None = None,
        *,
        actor: str = SYSTEM_ACTOR,
        request_id: str = "",
        trigger: str = "on_demand",
    ) -> Rotation:
        """Rotates now: next -> active, active -> retired, and a new next key.

        The next key starts signing at once even if it was published less than
        ``keys.publish_ahead_s`` ago. That is the point of an on-demand rotation (a leaked key
        must stop signing now); the cost is that a verifier whose cached JWKS predates the next
        key meets an unknown kid and must refetch the JWKS. Scheduled rotations never do this.

        Raises:
            InvalidRequest: an unknown algorithm.
        """
        name = _check_algorithm(algorithm or self._keys.algorithm)
        rotation = await self._rotate(name, actor, request_id, trigger, scheduled=False)
        assert rotation is not None
        return rotation

    async def rotate_for(
        self, principal: Principal, algorithm: str | None, *, request_id: str = ""
    ) -> Rotation:
        """``rotate`` on behalf of an admin caller; a refused attempt is audited too.

        Raises:
            PermissionDenied: the caller lacks chittyauth:admin and keys:admin.
            InvalidRequest: an unknown algorithm.
        """
        try:
            require_key_admin(principal)
            return await self.rotate(algorithm, actor=principal.subject, request_id=request_id)
        except DomainError as exc:
            async with self._store.transaction() as tx:
                await tx.audit(
                    AuditRecord(
                        actor=principal.subject,
                        subject=principal.subject,
                        action="key.rotated",
                        outcome="failure",
                        resource="signingKeys",
                        request_id=request_id,
                        attributes={"reason": exc.reason, "algorithm": algorithm or ""},
                    )
                )
            raise

    async def purge_expired(self, *, actor: str = SYSTEM_ACTOR) -> int:
        """Deletes retired keys past their delete time; returns how many."""
        now = self._clock.now()
        if not any(
            info.state == "retired" and (info.delete_time or 0) <= now
            for info in self._snapshot.infos
        ):
            return 0  # the common case: no write transaction at all
        async with self._store.transaction() as tx:
            rows = await key_rows.expired_keys(tx, tx.now)
            await key_rows.delete_keys(tx, [row.kid for row in rows])
            for row in rows:
                await self._record(tx, "key.deleted", _info(row), actor, "")
        if rows:
            log.info("signing keys deleted", extra={"kids": [row.kid for row in rows]})
        await self.load()
        return len(rows)

    async def list_keys(self, algorithm: str = "") -> list[KeyInfo]:
        """Every stored key (of ``algorithm`` when given), newest first.

        Raises:
            InvalidRequest: an unknown algorithm.
        """
        if algorithm:
            _check_algorithm(algorithm)
        async with self._store.read() as reader:
            rows = await key_rows.list_keys(reader, algorithm)
        return [_info(row) for row in rows]

    # -- the schedule -------------------------------------------------------------------------

    async def maintain(self) -> None:
        """One pass of the schedule: reload, ensure keys, rotate what is due, purge."""
        await self.load()  # also catches a change the feed could not deliver
        await self.ensure_keys()
        now = self._clock.now()
        for algorithm in ALGORITHMS:
            active = self._snapshot.live(algorithm, "active")
            upcoming = self._snapshot.live(algorithm, "next")
            if active and upcoming and now >= self._due_at(active, upcoming):
                await self._rotate(algorithm, SYSTEM_ACTOR, "", "scheduled", scheduled=True)
        await self.purge_expired()

    async def run_schedule(self, check_interval_s: float = 60.0) -> None:
        """Runs ``maintain`` now and then every ``check_interval_s`` until cancelled.

        Time is read from the injected clock, so only the cadence of checks is real time.
        """
        while True:
            try:
                await self.maintain()
            except Exception:  # the schedule must outlive a failed pass; it retries
                log.exception("signing key maintenance failed")
            await asyncio.sleep(check_interval_s)

    # -- internals ----------------------------------------------------------------------------

    def _due_at(
        self, active: KeyInfo | key_rows.KeyRow, upcoming: KeyInfo | key_rows.KeyRow
    ) -> float:
        """When a scheduled rotation may happen.

        Both the rotation interval must have passed and the next key must have been published
        for ``publish_ahead_s``.
        """
        activated = active.activate_time or active.create_time
        return max(
            activated + self._keys.rotation_interval_s,
            upcoming.create_time + self._keys.publish_ahead_s,
        )

    def _planned_activation(self, active_since: float, published: float) -> float:
        return max(
            active_since + self._keys.rotation_interval_s, published + self._keys.publish_ahead_s
        )

    async def _rotate(
        self, algorithm: str, actor: str, request_id: str, trigger: str, *, scheduled: bool
    ) -> Rotation | None:
        fresh = await _Fresh.make(algorithm, 1 if self._snapshot.live(algorithm, "next") else 2)
        async with self._store.transaction() as tx:
            rotation = await self._rotate_in(
                tx, fresh, actor, request_id, trigger, scheduled=scheduled
            )
        # Reload either way: when another process rotated first, this one's ring is stale.
        await self.load()
        if rotation is not None:
            log.info(
                "signing key rotated",
                extra={
                    "algorithm": algorithm,
                    "active_kid": rotation.active.kid,
                    "retired_kid": rotation.retired.kid if rotation.retired else "",
                    "next_kid": rotation.next.kid,
                    "trigger": trigger,
                },
            )
        return rotation

    async def _rotate_in(
        self,
        tx: SqliteTransaction,
        fresh: _Fresh,
        actor: str,
        request_id: str,
        trigger: str,
        *,
        scheduled: bool,
    ) -> Rotation | None:
        live = await key_rows.live_keys(tx, fresh.algorithm)
        active, upcoming = live.get("active"), live.get("next")
        # A scheduled rotation re-checks inside the transaction: another process may have
        # rotated since this one looked, and must not be followed by a second rotation.
        if scheduled and not (active and upcoming and tx.now >= self._due_at(active, upcoming)):
            return None
        now = tx.now
        retired: KeyInfo | None = None
        if active is not None:
            delete_time = now + self.max_token_lifetime_s + self._tokens.leeway_s
            await key_rows.retire(tx, active.kid, now, delete_time)
            retired = replace(
                _info(active), state="retired", retire_time=now, delete_time=delete_time
            )
        if upcoming is not None:
            await key_rows.activate(tx, upcoming.kid, now)
            new_active = replace(_info(upcoming), state="active", activate_time=now)
        else:
            new_active = await self._create(tx, fresh, "active", now, actor, request_id)
        planned = self._planned_activation(now, now)
        new_next = await self._create(tx, fresh, "next", planned, actor, request_id)
        await self._record(
            tx,
            "key.rotated",
            new_active,
            actor,
            request_id,
            trigger=trigger,
            retired_kid=retired.kid if retired else "",
            next_kid=new_next.kid,
        )
        return Rotation(new_active, new_next, retired)

    async def _create(
        self,
        tx: SqliteTransaction,
        fresh: _Fresh,
        state: str,
        activate_time: float,
        actor: str,
        request_id: str,
    ) -> KeyInfo:
        kid = new_id("key")
        material = await fresh.take()
        row = key_rows.KeyRow(
            kid=kid,
            algorithm=fresh.algorithm,
            state=state,
            sealed_key=self._sealer.seal(kid, material),
            create_time=tx.now,
            activate_time=activate_time,
        )
        await key_rows.insert_key(tx, row)
        info = _info(row)
        await self._record(tx, "key.created", info, actor, request_id)
        return info

    async def _record(
        self,
        tx: SqliteTransaction,
        action: str,
        info: KeyInfo,
        actor: str,
        request_id: str,
        **extra: str,
    ) -> None:
        """The audit record and change-log entry of one key change (ids only, no material)."""
        attributes = {"algorithm": info.algorithm, "state": info.state}
        attributes.update({name: value for name, value in extra.items() if value})
        await tx.audit(
            AuditRecord(
                actor=actor,
                subject=info.kid,
                action=action,
                outcome="success",
                resource=f"signingKeys/{info.kid}",
                request_id=request_id,
                attributes=attributes,
            )
        )
        await tx.append_change(CHANGE_KIND, info.kid, {"event": action, **attributes})


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise InvalidRequest(
            f"unsupported algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}",
            reason="UNSUPPORTED_ALGORITHM",
        )
    return algorithm


def _info(row: key_rows.KeyRow) -> KeyInfo:
    return KeyInfo(
        kid=row.kid,
        algorithm=row.algorithm,
        state=row.state,
        create_time=row.create_time,
        activate_time=row.activate_time,
        retire_time=row.retire_time,
        delete_time=row.delete_time,
    )
