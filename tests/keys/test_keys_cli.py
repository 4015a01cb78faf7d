"""``chittyauth keys list|rotate`` (the functions the CLI calls), on real database files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, KeyConfig, StoreConfig, replace
from chittyauth.keys_cli import EXIT_CONFIG, EXIT_OK, keys_list, keys_rotate
from chittyauth.store.sqlite import SqliteStore
from tests.keys.helpers import audit_events, db_rows, keys_config


def printed_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_rotate_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = keys_config(tmp_path / "k.db")
    assert await keys_rotate(config) == EXIT_OK
    [first] = printed_lines(capsys)
    assert first["retired"] is None  # a fresh database: the ring starts
    assert await keys_rotate(config, "ES256") == EXIT_OK
    [second] = printed_lines(capsys)
    assert isinstance(second["retired"], dict)
    assert isinstance(first["active"], dict)
    assert second["retired"]["kid"] == first["active"]["kid"]
    assert second["retired"]["delete_time"].endswith("Z")

    assert await keys_list(config) == EXIT_OK
    listed = printed_lines(capsys)
    assert {(k["kid"], k["state"]) for k in listed} == {
        (kid, state) for kid, (state, _) in db_rows(config.store.path).items()
    }
    assert len(listed) == 3
    store = SqliteStore(config.store.path, FakeClock())
    await store.open()
    try:
        rotations = await audit_events(store, "key.rotated")
    finally:
        await store.close()
    assert [(e.actor, e.attributes["trigger"]) for e in rotations] == [("system", "cli")] * 2


async def test_rotate_needs_the_kek_but_list_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "p.db"
    assert await keys_rotate(keys_config(db)) == EXIT_OK
    capsys.readouterr()
    production = replace(
        Config(mode="production"), store=StoreConfig(path=str(db)), keys=KeyConfig()
    )
    assert await keys_rotate(production) == EXIT_CONFIG
    assert "keys.encryption_key" in capsys.readouterr().err
    wrong = replace(production, keys=KeyConfig(encryption_key="ab" * 32))
    assert await keys_rotate(wrong) == EXIT_CONFIG
    assert "not the key that sealed it" in capsys.readouterr().err
    assert await keys_list(production) == EXIT_OK
    assert len(printed_lines(capsys)) == 2


async def test_unknown_algorithm_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await keys_rotate(keys_config(tmp_path / "k.db"), "none") == 1
    assert "unsupported algorithm" in capsys.readouterr().err


async def test_a_cli_rotation_reaches_a_running_server(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    old = server.keys.signer().kid
    assert await keys_rotate(server.config) == EXIT_OK
    [rotation] = printed_lines(capsys)
    assert isinstance(rotation["active"], dict)
    async with asyncio.timeout(5):  # the change feed polls another process's commits
        while server.keys.signer().kid == old:
            await asyncio.sleep(0.05)
    assert server.keys.signer().kid == rotation["active"]["kid"]
    verifier = server.keys.verifier(old)
    assert verifier is not None  # the retired key still verifies
