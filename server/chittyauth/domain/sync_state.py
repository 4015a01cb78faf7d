"""Encryption at rest for session state blobs: AES-256-GCM under rotatable data keys.

Envelope encryption: each state blob is sealed with a random 256-bit data key; data keys are
stored wrapped (sealed) under the key-encryption key from ``[sessions] state_encryption_key``.
Rotation adds a new data key that seals every later write; older keys stay in the store, so
blobs sealed under them remain readable. The key id is stored next to each blob.

A sealed value is ``12-byte random nonce ‖ ciphertext+tag``. The associated data binds a blob
to its session, MCP server and version, so a blob copied to another row, or an older version
put back, fails to decrypt instead of being accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chittyauth.config import SessionConfig
from chittyauth.domain.errors import DomainError, FailedPrecondition
from chittyauth.domain.ids import new_id
from chittyauth.store import sessions as repo
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

NONCE_BYTES = 12
KEY_BYTES = 32
# A fixed development key: state sealed with it is protected from nothing but accidents.
_DEVELOPMENT_KEK = hashlib.sha256(b"chittyauth development session-state key").digest()


class StateUnreadable(DomainError):
    """A stored state blob does not decrypt: altered, moved, or its key is gone."""

    grpc_code = "DATA_LOSS"
    oauth_error = "server_error"
    reason = "STATE_UNREADABLE"
    http_status = 500


def key_encryption_key(config: SessionConfig, *, production: bool) -> bytes:
    """The key-encryption key from config; a fixed derived key in development when unset.

    Raises:
        FailedPrecondition: the key is malformed, or missing in production (refuse to start).
    """
    text = config.state_encryption_key.strip()
    if not text:
        if production:
            raise FailedPrecondition(
                "sessions.state_encryption_key is required in production",
                reason="STATE_KEY_MISSING",
            )
        log.warning(
            "sessions.state_encryption_key is not set: session state is sealed with a fixed"
            " development key; set 64 hex characters before storing real data"
        )
        return _DEVELOPMENT_KEK
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise FailedPrecondition(
            "sessions.state_encryption_key must be 64 hex characters (256 bits)",
            reason="STATE_KEY_INVALID",
        )
    return key


class StateKeyring:
    """The data keys, unwrapped in memory; the newest one seals new blobs."""

    def __init__(self, store: SqliteStore, kek: bytes) -> None:
        self._store = store
        self._kek = AESGCM(kek)
        self._keys: dict[str, AESGCM] = {}
        self.current_key_id = ""

    async def load(self) -> None:
        """Loads (and on first start creates) the data keys.

        Raises:
            FailedPrecondition: a stored key does not unwrap, i.e. the configured key is not
                the one the keys were sealed with.
        """
        await self._reload()
        if not self.current_key_id:
            async with self._store.transaction() as tx:
                # Another process may have created one since the read above.
                if not await repo.list_state_keys(tx):
                    await self.rotate(tx)
            await self._reload()

    async def rotate(self, tx: SqliteTransaction) -> str:
        """Adds a new data key that seals every later write; returns its id (live on commit)."""
        key_id = new_id("sk")
        data_key = AESGCM.generate_key(bit_length=256)
        await repo.add_state_key(tx, key_id, self._wrap(key_id, data_key), tx.now)

        def activate() -> None:
            self._keys[key_id] = AESGCM(data_key)
            self.current_key_id = key_id

        tx.on_commit(activate)
        return key_id

    def seal(
        self, plaintext: bytes, *, session_id: str, mcp_server: str, version: int
    ) -> tuple[str, bytes]:
        """Encrypts a state blob under the current key; returns (key id, nonce ‖ ciphertext)."""
        nonce = os.urandom(NONCE_BYTES)
        aad = _state_aad(session_id, mcp_server, version)
        sealed = self._keys[self.current_key_id].encrypt(nonce, plaintext, aad)
        return self.current_key_id, nonce + sealed

    async def open(
        self, key_id: str, sealed: bytes, *, session_id: str, mcp_server: str, version: int
    ) -> bytes:
        """Decrypts a state blob.

        Raises:
            StateUnreadable: the blob or its binding was altered, or the key is unknown.
        """
        if key_id not in self._keys:
            # Another process may have rotated since this one loaded its keys.
            await self._reload()
        cipher = self._keys.get(key_id)
        if cipher is None or len(sealed) < NONCE_BYTES:
            raise StateUnreadable("the stored state cannot be decrypted")
        try:
            return cipher.decrypt(
                sealed[:NONCE_BYTES],
                sealed[NONCE_BYTES:],
                _state_aad(session_id, mcp_server, version),
            )
        except InvalidTag as exc:
            log.error(
                "state blob failed authentication",
                extra={"session_id": session_id, "mcp_server": mcp_server, "key_id": key_id},
            )
            raise StateUnreadable("the stored state cannot be decrypted") from exc

    async def _reload(self) -> None:
        async with self._store.read() as reader:
            rows = await repo.list_state_keys(reader)
        keys: dict[str, AESGCM] = {}
        current = ""
        for row in rows:
            keys[row.key_id] = AESGCM(self._unwrap(row.key_id, row.wrapped))
            if row.retired_at is None:
                current = row.key_id
        self._keys, self.current_key_id = keys, current

    def _wrap(self, key_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._kek.encrypt(nonce, data_key, _key_aad(key_id))

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return self._kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _key_aad(key_id))
        except InvalidTag as exc:
            raise FailedPrecondition(
                "sessions.state_encryption_key does not open the stored state keys"
                " (was it changed?)",
                reason="STATE_KEY_MISMATCH",
            ) from exc


def _state_aad(session_id: str, mcp_server: str, version: int) -> bytes:
    # JSON keeps the parts unambiguous whatever characters they contain.
    return json.dumps(["chittyauth/session-state/v1", session_id, mcp_server, version]).encode()


def _key_aad(key_id: str) -> bytes:
    return json.dumps(["chittyauth/session-state-key/v1", key_id]).encode()
