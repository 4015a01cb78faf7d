"""Group commit: concurrent transactions share one COMMIT and keep their own semantics."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chittyauth.clock import FakeClock
from chittyauth.store.protocol import AuditQuery, AuditRecord
from chittyauth.store.sqlite import SqliteStore


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(path, FakeClock())
    await store.open()
    return store


def committed_changes(db: Path) -> set[str]:
    """What a second connection sees: only durable, committed rows."""
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM changes")}


async def test_concurrent_units_commit_together_and_are_visible_on_return(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    commits = 0

    def count() -> None:
        nonlocal commits
        commits += 1

    store.add_commit_listener(count)
    seen_on_return: list[bool] = []

    async def write(i: int) -> None:
        async with store.transaction() as tx:
            await tx.append_change("test.kind", f"k{i}", {"i": i})
            # Reads inside a unit see its own writes.
            row = await tx.fetchone("SELECT COUNT(*) FROM changes WHERE key = ?", (f"k{i}",))
            assert row is not None
            assert row[0] == 1
            await tx.audit(AuditRecord("system", f"s{i}", "test.write", "success"))
        seen_on_return.append(f"k{i}" in committed_changes(db))

    try:
        await asyncio.gather(*(write(i) for i in range(50)))
        assert all(seen_on_return)
        assert len(seen_on_return) == 50
        assert committed_changes(db) == {f"k{i}" for i in range(50)}
        assert commits < 50  # batched: fewer commits than units
        verification = await store.verify_audit_log()
        assert verification.valid
        assert verification.checked == 50
    finally:
        await store.close()


async def test_a_failing_unit_rolls_back_alone(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    callbacks: list[int] = []

    async def write(i: int) -> None:
        async with store.transaction() as tx:
            await tx.append_change("test.kind", f"k{i}", {})
            await tx.audit(AuditRecord("system", f"s{i}", "test.write", "success"))
            tx.on_commit(lambda: callbacks.append(i))
            await asyncio.sleep(0)  # let the others queue up behind this unit
            if i % 3 == 0:
                raise RuntimeError(f"unit {i} fails")

    try:
        results = await asyncio.gather(*(write(i) for i in range(30)), return_exceptions=True)
        failed = {i for i, r in enumerate(results) if isinstance(r, RuntimeError)}
        assert failed == {i for i in range(30) if i % 3 == 0}
        kept = {i for i in range(30) if i % 3}
        assert committed_changes(db) == {f"k{i}" for i in kept}
        assert set(callbacks) == kept  # on_commit only for committed units
        events = await store.list_audit_events(AuditQuery(limit=100))
        assert sorted(e.subject for e in events) == sorted(f"s{i}" for i in kept)
        assert [e.seq for e in events] == list(range(1, len(kept) + 1))
        assert (await store.verify_audit_log()).valid
    finally:
        await store.close()


async def test_a_constraint_error_fails_only_its_unit(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)
    other = sqlite3.connect(db)
    try:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE t (v INTEGER NOT NULL UNIQUE) STRICT")

        async def write(v: int) -> None:
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO t (v) VALUES (?)", (v,))

        results = await asyncio.gather(*(write(v) for v in (1, 2, 2, 3)), return_exceptions=True)
        # The duplicate fails alone (its savepoint), the rest commit.
        assert [isinstance(r, sqlite3.IntegrityError) for r in results] == [
            False,
            False,
            True,
            False,
        ]
        assert {r[0] for r in other.execute("SELECT v FROM t")} == {1, 2, 3}
        # The store keeps working after a failed unit.
        await write(4)
        assert {r[0] for r in other.execute("SELECT v FROM t")} == {1, 2, 3, 4}
    finally:
        other.close()
        await store.close()


@pytest.mark.parametrize("rounds", [5])
async def test_cancelled_waiters_do_not_strand_a_batch(tmp_path: Path, rounds: int) -> None:
    db = tmp_path / "a.db"
    store = await open_store(db)

    async def write(i: int) -> None:
        async with store.transaction() as tx:
            await tx.append_change("test.kind", f"k{i}", {})
            await tx.audit(AuditRecord("system", "s", "test.write", "success"))

    try:
        for r in range(rounds):
            tasks = [asyncio.create_task(write(r * 100 + i)) for i in range(10)]
            await asyncio.sleep(0)
            for task in tasks[1:]:
                task.cancel()  # cancelled while waiting for the lock
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await asyncio.wait_for(write(9999), 5)
        assert "k9999" in committed_changes(db)
        changes = await store.changes_after(0, limit=10_000)
        events = await store.list_audit_events(AuditQuery(limit=10_000))
        assert len(changes) == len(events)
        assert (await store.verify_audit_log()).valid
    finally:
        await store.close()
