"""The SQLite store: migrations, restart survival, the change log and the audit chain."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chittyauth.clock import FakeClock
from chittyauth.store.protocol import AuditQuery, AuditRecord
from chittyauth.store.sqlite import SqliteStore, available_migrations
from tests.foundation.test_config import run_cli


async def open_store(path: Path, clock: FakeClock | None = None) -> SqliteStore:
    store = SqliteStore(path, clock or FakeClock())
    await store.open()
    return store


async def test_migrations_twice_leave_the_same_version(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    env = {"CHITTYAUTH_STORE__PATH": str(db)}
    code1, out1, _ = await run_cli("migrate", env=env)
    code2, out2, _ = await run_cli("migrate", env=env)
    latest = available_migrations()[-1][0]
    assert (code1, code2) == (0, 0)
    assert out1 == out2 == f"schema version {latest}\n"
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
    assert rows == (len(available_migrations()),)


async def test_store_settings(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "a.db")
    try:
        async with store.transaction() as tx:
            mode = await tx.fetchone("PRAGMA journal_mode")
            fks = await tx.fetchone("PRAGMA foreign_keys")
        assert mode is not None
        assert mode[0] == "wal"
        assert fks is not None
        assert fks[0] == 1
    finally:
        await store.close()


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    async with store.transaction() as tx:
        seq = await tx.append_change("test.kind", "k1", {"n": 1})
        await tx.audit(AuditRecord("system", "someone", "test.write", "success"))
    await store.close()

    reopened = await open_store(db)
    try:
        changes = await reopened.changes_after(0)
        events = await reopened.list_audit_events(AuditQuery())
        assert [(c.seq, c.kind, c.key, dict(c.payload)) for c in changes] == [
            (seq, "test.kind", "k1", {"n": 1})
        ]
        assert [(e.seq, e.action, e.subject) for e in events] == [(1, "test.write", "someone")]
        # The chain continues from the stored head after a restart.
        async with reopened.transaction() as tx:
            second = await tx.audit(AuditRecord("system", "x", "test.again", "success"))
        assert second.seq == 2
        assert second.prev_hash == events[0].hash
        assert (await reopened.verify_audit_log()).valid
    finally:
        await reopened.close()


async def test_rollback_writes_nothing(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "a.db")
    try:
        try:
            async with store.transaction() as tx:
                await tx.append_change("test.kind", "k", {})
                await tx.audit(AuditRecord("a", "b", "c", "failure"))
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert await store.changes_after(0) == []
        assert await store.list_audit_events(AuditQuery()) == []
        async with store.transaction() as tx:
            event = await tx.audit(AuditRecord("a", "b", "c", "success"))
        assert event.seq == 1
        assert (await store.verify_audit_log()).valid
    finally:
        await store.close()


async def test_change_log_is_ordered_and_prunable(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    store = await open_store(tmp_path / "a.db", clock)
    try:
        for i in range(5):
            async with store.transaction() as tx:
                await tx.append_change("k", str(i), {"i": i})
            clock.advance(10)
        changes = await store.changes_after(2)
        assert [c.key for c in changes] == ["2", "3", "4"]
        assert await store.prune_changes(before=1025.0) == 3
        assert await store.first_change_seq() == 4
        assert await store.last_change_seq() == 5
        filtered = await store.changes_after(0, kinds=("other",))
        assert filtered == []
    finally:
        await store.close()


async def test_audit_tampering_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    for i in range(4):
        async with store.transaction() as tx:
            await tx.audit(AuditRecord("system", f"s{i}", "test.write", "success"))
    assert (await store.verify_audit_log()).valid
    await store.close()

    raw = sqlite3.connect(db)
    raw.execute("DROP TRIGGER audit_events_no_update")
    raw.execute("UPDATE audit_events SET subject = 'mallory' WHERE seq = 3")
    raw.commit()
    raw.close()
    store = await open_store(db)
    try:
        result = await store.verify_audit_log()
        assert not result.valid
        assert result.first_bad_seq == 3
    finally:
        await store.close()


async def test_audit_delete_of_the_newest_record_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    for i in range(3):
        async with store.transaction() as tx:
            await tx.audit(AuditRecord("system", f"s{i}", "test.write", "success"))
    await store.close()

    raw = sqlite3.connect(db)
    raw.execute("DROP TRIGGER audit_events_no_delete")
    raw.execute("DELETE FROM audit_events WHERE seq = 3")
    raw.commit()
    raw.close()
    store = await open_store(db)
    try:
        result = await store.verify_audit_log()
        assert not result.valid
        assert result.first_bad_seq == 3
    finally:
        await store.close()


async def test_audit_rows_cannot_be_updated_through_sql(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    async with store.transaction() as tx:
        await tx.audit(AuditRecord("system", "s", "test.write", "success"))
    await store.close()
    raw = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit_events")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE audit_events SET actor = 'x'")
    finally:
        raw.close()


async def test_two_processes_extend_one_audit_chain(tmp_path: Path) -> None:
    """A second store on the same file (the CLI beside a live server) keeps the chain whole."""
    db = tmp_path / "a.db"
    first = await open_store(db)
    second = await open_store(db)
    try:
        for store in (first, second, first, second):
            async with store.transaction() as tx:
                await tx.audit(AuditRecord("system", "s", "test.write", "success"))
        result = await first.verify_audit_log()
        assert result.valid
        assert result.checked == 4
    finally:
        await first.close()
        await second.close()


async def test_cancelled_transactions_leave_the_store_usable(tmp_path: Path) -> None:
    """Callers whose deadline passes mid-transaction must not wedge the writer connection."""
    store = await open_store(tmp_path / "a.db")

    async def write(i: int) -> None:
        async with store.transaction() as tx:
            await tx.append_change("k", str(i), {})
            await tx.audit(AuditRecord("system", "s", "test.write", "success"))

    try:
        for _ in range(20):
            tasks = [asyncio.create_task(write(i)) for i in range(20)]
            await asyncio.sleep(0.001)
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await write(999)  # the store still takes transactions
        assert (await store.verify_audit_log()).valid
        changes = await store.changes_after(0, limit=10_000)
        events = await store.list_audit_events(AuditQuery(limit=10_000))
        assert len(changes) == len(events)  # every commit wrote both, or neither
    finally:
        await store.close()
