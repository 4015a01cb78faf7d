"""``chittyauth keys list|rotate``: signing keys from the command line, as JSON on stdout.

Both work on the database directly, beside or without a running server; a running server
learns about a rotation from the change log within its poll interval.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chittyauth.clock import SystemClock
from chittyauth.config import Config
from chittyauth.domain.errors import DomainError
from chittyauth.domain.keys import KeyEncryptionKeyError, KeyInfo, KeyRing
from chittyauth.store import keys as key_rows
from chittyauth.store.sqlite import SqliteStore

EXIT_OK = 0
EXIT_FAILED = 1
# The configuration (the key-encryption key) is wrong: the same code as a bad setting.
EXIT_CONFIG = 2


async def keys_list(config: Config) -> int:
    """Prints one JSON object per signing key, newest first. Needs no key-encryption key.

    Returns:
        The exit code: 0, or 1 when the database cannot be opened.
    """

    async def run(store: SqliteStore) -> None:
        async with store.read() as reader:
            rows = await key_rows.list_keys(reader)
        for row in rows:
            print(json.dumps(_key_json(row)))

    return await _with_store(config, run)


async def keys_rotate(config: Config, algorithm: str | None = None) -> int:
    """Rotates now and prints ``{"active": …, "next": …, "retired": …}`` as one JSON object.

    Args:
        config: the settings (database path, key-encryption key, token lifetimes).
        algorithm: ES256, EdDSA, RS256 or HS256; None rotates the signing algorithm's ring.

    Returns:
        The exit code: 0; 2 when the key-encryption key is missing or wrong; 1 otherwise.
    """

    async def run(store: SqliteStore) -> None:
        ring = KeyRing(store, store.clock, config)
        await ring.load()
        rotation = await ring.rotate(algorithm, trigger="cli")
        retired = _key_json(rotation.retired) if rotation.retired else None
        print(
            json.dumps(
                {
                    "active": _key_json(rotation.active),
                    "next": _key_json(rotation.next),
                    "retired": retired,
                }
            )
        )

    return await _with_store(config, run)


async def _with_store(config: Config, run: Callable[[SqliteStore], Awaitable[None]]) -> int:
    store = SqliteStore(
        config.store.path, SystemClock(), busy_timeout_ms=config.store.busy_timeout_ms
    )
    try:
        await store.open()
        await run(store)
    except KeyEncryptionKeyError as exc:
        print(f"chittyauth: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except DomainError as exc:
        print(f"chittyauth: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    return EXIT_OK


def _key_json(key: KeyInfo | key_rows.KeyRow) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "algorithm": key.algorithm,
        "state": key.state,
        "create_time": _iso(key.create_time),
        "activate_time": _iso(key.activate_time),
        "retire_time": _iso(key.retire_time),
        "delete_time": _iso(key.delete_time),
    }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
