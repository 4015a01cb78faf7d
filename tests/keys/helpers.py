"""Helpers for the signing-key tests: a key ring over a real database file."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from chittyauth.clock import FakeClock
from chittyauth.config import Config, KeyConfig, StoreConfig, replace
from chittyauth.domain.keys import KeyRing
from chittyauth.store.protocol import AuditQuery, StoredAuditEvent
from chittyauth.store.sqlite import SqliteStore

# A valid key-encryption key for tests (64 hex characters).
TEST_KEK = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def keys_config(db: Path, **keys: Any) -> Config:
    """Defaults with a database file and key settings overridden."""
    return replace(
        Config(),
        store=StoreConfig(path=str(db)),
        keys=dataclasses.replace(KeyConfig(encryption_key=TEST_KEK), **keys),
    )


@asynccontextmanager
async def open_ring(
    config: Config, clock: FakeClock, *, ensure: bool = True
) -> AsyncIterator[tuple[SqliteStore, KeyRing]]:
    """An open store and a loaded key ring (with its first keys unless ``ensure`` is False)."""
    store = SqliteStore(config.store.path, clock)
    await store.open()
    try:
        ring = KeyRing(store, clock, config)
        await ring.load()
        if ensure:
            await ring.ensure_keys()
        yield store, ring
    finally:
        await store.close()


def sql_one(db: str | Path, sql: str, params: Sequence[Any] = ()) -> Any:
    """One row from the database file, read with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchone()
    finally:
        conn.close()


def db_rows(db: str | Path) -> dict[str, tuple[str, str]]:
    """(state, algorithm) of every stored key by kid, read with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT kid, state, algorithm FROM signing_keys").fetchall()
    finally:
        conn.close()
    return {kid: (state, algorithm) for kid, state, algorithm in rows}


async def audit_events(store: SqliteStore, action: str = "") -> list[StoredAuditEvent]:
    return await store.list_audit_events(AuditQuery(action=action, limit=1000))
