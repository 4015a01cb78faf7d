"""Key material at rest: sealed with AES-256-GCM under the KEK, refused without a good KEK."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, GrpcConfig, HttpConfig, KeyConfig, StoreConfig, replace
from chittyauth.domain import keys as keys_module
from chittyauth.domain.keys import DEV_KEY_ENCRYPTION_KEY, KeyEncryptionKeyError, KeyRing
from chittyauth.store.sqlite import SqliteStore
from tests.foundation.test_config import run_cli
from tests.keys.helpers import TEST_KEK, keys_config, open_ring, sql_one


def database_bytes(db: str) -> bytes:
    """The database file and its WAL, as stored on disk."""
    return b"".join(p.read_bytes() for p in Path(db).parent.glob(Path(db).name + "*"))


async def test_the_database_holds_no_private_key_bytes(tmp_path: Path) -> None:
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, FakeClock()) as (_, ring):
        await ring.rotate("HS256")
        es_key = ring.signer().key
        assert isinstance(es_key, ec.EllipticCurvePrivateKey)
        der = es_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        scalar = es_key.private_numbers().private_value.to_bytes(32, "big")
        hs_secret = ring.signer("HS256").key
        kid = ring.signer().kid
        stored = database_bytes(config.store.path)
        assert stored  # the data is there
        for secret in (der, scalar, hs_secret):
            assert secret not in stored

    # The stored form is nonce || AES-256-GCM(ciphertext || tag) with the kid bound in.
    row = sql_one(config.store.path, "SELECT sealed_key FROM signing_keys WHERE kid = ?", (kid,))
    sealed = bytes(row[0])
    assert len(sealed) == 12 + len(der) + 16
    aead = AESGCM(bytes.fromhex(TEST_KEK))
    assert aead.decrypt(sealed[:12], sealed[12:], kid.encode()) == der


async def test_a_different_kek_cannot_unseal(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    async with open_ring(keys_config(db), FakeClock()):
        pass
    other = keys_config(db, encryption_key="ff" * 32)
    with pytest.raises(KeyEncryptionKeyError, match="not the key that sealed it"):
        async with open_ring(other, FakeClock()):
            pass


async def test_a_moved_sealed_key_cannot_be_unsealed(tmp_path: Path) -> None:
    """The kid is the associated data: copying one key's ciphertext onto another kid fails."""
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, FakeClock()):
        pass
    conn = sqlite3.connect(config.store.path)
    try:
        with conn:
            conn.execute(
                "UPDATE signing_keys SET sealed_key = (SELECT sealed_key FROM signing_keys"
                " WHERE state = 'active') WHERE state = 'next'"
            )
    finally:
        conn.close()
    with pytest.raises(KeyEncryptionKeyError):
        async with open_ring(config, FakeClock()):
            pass


@pytest.mark.parametrize(
    ("encryption_key", "message"),
    [
        ("", "must be set to 64 hex characters in production mode"),
        ("abcd", "must be 64 hex characters"),
        ("zz" * 32, "must be 64 hex characters"),
        (DEV_KEY_ENCRYPTION_KEY.hex(), "public development key"),
    ],
)
async def test_production_refuses_to_start_without_a_good_kek(
    tmp_path: Path, encryption_key: str, message: str
) -> None:
    config = replace(
        Config(mode="production"),
        grpc=GrpcConfig(port=0),
        http=HttpConfig(port=0),
        store=StoreConfig(path=str(tmp_path / "p.db")),
        keys=KeyConfig(encryption_key=encryption_key),
    )
    server = Server(config)
    try:
        with pytest.raises(KeyEncryptionKeyError, match=message) as caught:
            await server.start()
    finally:
        await server.store.close()
    assert caught.value.reason == "KEY_ENCRYPTION_KEY_INVALID"
    assert "keys.encryption_key" in caught.value.message
    # Nothing was created with a key it could not seal properly.
    assert sql_one(tmp_path / "p.db", "SELECT COUNT(*) FROM signing_keys") == (0,)


async def test_serve_in_production_without_kek_exits_with_a_clear_message(
    tmp_path: Path,
) -> None:
    code, _, err = await run_cli(
        "serve",
        env={
            "CHITTYAUTH_MODE": "production",
            "CHITTYAUTH_STORE__PATH": str(tmp_path / "p.db"),
            "CHITTYAUTH_GRPC__PORT": "0",
            "CHITTYAUTH_HTTP__PORT": "0",
            "CHITTYAUTH_KEYS__ENCRYPTION_KEY": "",
        },
    )
    assert code != 0
    assert "keys.encryption_key" in err


async def test_development_derives_a_fixed_kek_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "_dev_kek_warned", False)
    config = keys_config(tmp_path / "d.db", encryption_key="")
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="chittyauth.domain.keys"):
        async with open_ring(config, clock) as (_, ring):
            kid = ring.signer().kid
        # A restart derives the same key and reads its keys back.
        async with open_ring(config, clock) as (_, again):
            assert again.signer().kid == kid
    warnings = [r for r in caplog.records if "development key" in r.getMessage()]
    assert len(warnings) == 1
    store = SqliteStore(config.store.path, clock)
    await store.open()
    try:
        with pytest.raises(KeyEncryptionKeyError):
            await KeyRing(store, clock, keys_config(tmp_path / "d.db")).load()
    finally:
        await store.close()
