"""The embedded backend: SQLite through aiosqlite, in WAL mode.

One writer connection, serialised by an asyncio lock, runs every transaction as
``BEGIN IMMEDIATE … COMMIT``; a second, read-only connection serves reads that must not see a
transaction in progress. Migrations are numbered SQL files applied in order, each in its own
transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, cast

import aiosqlite

from chittyauth.clock import Clock
from chittyauth.domain.errors import Unavailable
from chittyauth.store.protocol import (
    AuditQuery,
    AuditRecord,
    AuditVerification,
    Change,
    Outcome,
    StoredAuditEvent,
)

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Params = Sequence[Any] | Mapping[str, Any]


def audit_hash(
    seq: int,
    event_time: float,
    record: AuditRecord | StoredAuditEvent,
    prev_hash: str,
) -> str:
    """SHA-256 over a canonical JSON form of the record and the previous record's hash."""
    canonical = json.dumps(
        [
            seq,
            event_time,
            record.actor,
            record.subject,
            record.action,
            record.outcome,
            record.resource,
            record.request_id,
            dict(sorted(record.attributes.items())),
            prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every packaged SQLite migration, in order."""
    folder = resources.files("chittyauth.store") / "migrations" / "sqlite"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class SqliteTransaction:
    """A write transaction on the writer connection (see ``SqliteStore.transaction``)."""

    def __init__(self, store: SqliteStore, conn: aiosqlite.Connection) -> None:
        self._store = store
        self.conn = conn
        self.now = store.clock.now()
        self._audit_head = store._audit_head
        self._head_read = False
        self.after_commit: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` once the transaction has committed (never on rollback)."""
        self.after_commit.append(callback)

    async def execute(self, sql: str, params: Params = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def append_change(self, kind: str, key: str, payload: Mapping[str, Any]) -> int:
        cursor = await self.conn.execute(
            "INSERT INTO changes (kind, key, payload, created_at) VALUES (?, ?, ?, ?)",
            (kind, key, json.dumps(payload, separators=(",", ":")), self.now),
        )
        seq = cursor.lastrowid
        assert seq is not None
        return seq

    async def audit(self, record: AuditRecord) -> StoredAuditEvent:
        if not self._head_read:
            # Read the head under this transaction's write lock: another process (the CLI,
            # another replica) may have appended since this one last looked.
            row = await self.fetchone("SELECT value FROM meta WHERE name = 'audit_head'")
            if row is not None:
                seq_text, digest_text = str(row["value"]).split(":", 1)
                self._audit_head = (int(seq_text), digest_text)
            self._head_read = True
        prev_seq, prev_hash = self._audit_head
        seq = prev_seq + 1
        digest = audit_hash(seq, self.now, record, prev_hash)
        await self.conn.execute(
            "INSERT INTO audit_events (seq, event_time, actor, subject, action, outcome,"
            " resource, request_id, attributes, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                self.now,
                record.actor,
                record.subject,
                record.action,
                record.outcome,
                record.resource,
                record.request_id,
                json.dumps(dict(record.attributes), sort_keys=True),
                prev_hash,
                digest,
            ),
        )
        await self.conn.execute(
            "INSERT INTO meta (name, value) VALUES ('audit_head', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (f"{seq}:{digest}",),
        )
        self._audit_head = (seq, digest)
        return StoredAuditEvent(
            seq=seq,
            event_time=self.now,
            actor=record.actor,
            subject=record.subject,
            action=record.action,
            outcome=record.outcome,
            resource=record.resource,
            request_id=record.request_id,
            attributes=dict(record.attributes),
            prev_hash=prev_hash,
            hash=digest,
        )


class SqliteStore:
    """``Store`` on a SQLite file."""

    def __init__(self, path: str | Path, clock: Clock, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._audit_head: tuple[int, str] = (0, GENESIS_HASH)
        self._commit_listeners: list[Callable[[], None]] = []
        # Set when a transaction statement was cancelled mid-flight (a caller's deadline).
        self._interrupted = False

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect(readonly=False)
            await self.migrate()
            self._reader = await self._connect(readonly=True)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise Unavailable(f"cannot open the database at {self.path}: {exc}") from exc
        self._audit_head = await self._load_audit_head()

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        else:
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before anything is acknowledged.
            await conn.execute("PRAGMA synchronous = FULL")
        return conn

    # -- migrations -----------------------------------------------------------------------

    async def migrate(self) -> int:
        """Applies pending migrations; returns the schema version. Safe to run again."""
        conn = self._require_writer()
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT version FROM schema_migrations") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for version, name, sql in available_migrations():
            if version in applied:
                continue
            log.info("applying migration", extra={"migration": name})
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO schema_migrations (version, name, applied_at)"
                f" VALUES ({version}, '{name}', {self.clock.now()!r});\nCOMMIT;"
            )
        return await self.schema_version()

    async def schema_version(self) -> int:
        conn = self._require_writer()
        async with conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- transactions ---------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        conn = self._require_writer()
        async with self._write_lock:
            if self._interrupted:
                await self._recover(conn)
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                # The statement still runs on aiosqlite's thread: clean up before the next one.
                self._interrupted = True
                raise
            tx = SqliteTransaction(self, conn)
            try:
                yield tx
            except BaseException:
                try:
                    await conn.execute("ROLLBACK")
                except asyncio.CancelledError:
                    self._interrupted = True
                    raise
                raise
            try:
                await conn.execute("COMMIT")
            except asyncio.CancelledError:
                self._interrupted = True
                raise
            self._audit_head = tx._audit_head
        for callback in (*tx.after_commit, *self._commit_listeners):
            try:
                callback()
            except Exception:  # a listener's bug must not undo a committed change
                log.exception("commit listener failed")

    async def _recover(self, conn: aiosqlite.Connection) -> None:
        """After a cancelled BEGIN/COMMIT/ROLLBACK: wait for it, then end any open transaction."""
        # aiosqlite runs statements in order, so this waits for the interrupted one.
        await conn.execute("SELECT 1")
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        self._interrupted = False

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` after every commit (the change feed uses it to wake up)."""
        self._commit_listeners.append(callback)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteReader]:
        """Reads that see only committed data."""
        yield SqliteReader(self._require_reader())

    # -- change log -----------------------------------------------------------------------

    async def changes_after(
        self, seq: int, *, kinds: tuple[str, ...] = (), limit: int = 1000
    ) -> list[Change]:
        sql = "SELECT seq, kind, key, payload, created_at FROM changes WHERE seq > ?"
        params: list[Any] = [seq]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"  # placeholders only
            params.extend(kinds)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        rows = await SqliteReader(self._require_reader()).fetchall(sql, params)
        return [
            Change(
                seq=row["seq"],
                kind=row["kind"],
                key=row["key"],
                payload=json.loads(row["payload"]),
                created_at=row["created_at"],
            )
            for row in rows
        ]

    async def first_change_seq(self) -> int:
        row = await SqliteReader(self._require_reader()).fetchone(
            "SELECT COALESCE(MIN(seq), 0) FROM changes"
        )
        return int(row[0]) if row else 0

    async def last_change_seq(self) -> int:
        # sqlite_sequence remembers the last seq even after pruning empties the table.
        row = await SqliteReader(self._require_reader()).fetchone(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"
        )
        return int(row[0]) if row else 0

    async def prune_changes(self, before: float) -> int:
        async with self.transaction() as tx:
            cursor = await tx.execute("DELETE FROM changes WHERE created_at < ?", (before,))
            return cursor.rowcount

    # -- audit ----------------------------------------------------------------------------

    async def list_audit_events(self, query: AuditQuery) -> list[StoredAuditEvent]:
        clauses = ["seq > ?"]
        params: list[Any] = [query.after_seq]
        for column in ("subject", "actor", "action"):
            value = getattr(query, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.outcome is not None:
            clauses.append("outcome = ?")
            params.append(query.outcome)
        if query.start_time is not None:
            clauses.append("event_time >= ?")
            params.append(query.start_time)
        if query.end_time is not None:
            clauses.append("event_time < ?")
            params.append(query.end_time)
        params.append(query.limit)
        rows = await SqliteReader(self._require_reader()).fetchall(
            # Clauses are fixed column names; every value is bound.
            f"SELECT * FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",  # noqa: S608
            params,
        )
        return [_audit_row(row) for row in rows]

    async def verify_audit_log(self) -> AuditVerification:
        reader = SqliteReader(self._require_reader())
        expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
        async with reader.conn.execute("SELECT * FROM audit_events ORDER BY seq") as cursor:
            async for row in cursor:
                event = _audit_row(row)
                if event.seq != expected_seq:
                    return AuditVerification(
                        False, checked, expected_seq, f"record {expected_seq} is missing"
                    )
                if event.prev_hash != prev_hash:
                    return AuditVerification(
                        False, checked, event.seq, "link to the previous record is broken"
                    )
                if audit_hash(event.seq, event.event_time, event, prev_hash) != event.hash:
                    return AuditVerification(
                        False, checked, event.seq, "record content does not match its hash"
                    )
                checked += 1
                expected_seq, prev_hash = event.seq + 1, event.hash
        head = await reader.fetchone("SELECT value FROM meta WHERE name = 'audit_head'")
        head_value = head["value"] if head else f"0:{GENESIS_HASH}"
        if head_value != f"{expected_seq - 1}:{prev_hash}":
            head_seq = int(head_value.split(":", 1)[0])
            return AuditVerification(
                False,
                checked,
                max(expected_seq, 1),
                f"records after {expected_seq - 1} up to"
                f" {head_seq} are missing or the chain head was altered",
            )
        return AuditVerification(True, checked)

    # -- helpers --------------------------------------------------------------------------

    async def _load_audit_head(self) -> tuple[int, str]:
        row = await SqliteReader(self._require_writer()).fetchone(
            "SELECT value FROM meta WHERE name = 'audit_head'"
        )
        if row is None:
            return (0, GENESIS_HASH)
        seq, digest = str(row["value"]).split(":", 1)
        return (int(seq), digest)

    def _require_writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise Unavailable("the store is not open")
        return self._writer

    def _require_reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise Unavailable("the store is not open")
        return self._reader


class SqliteReader:
    """Read-only queries on committed data."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


def _audit_row(row: aiosqlite.Row) -> StoredAuditEvent:
    return StoredAuditEvent(
        seq=row["seq"],
        event_time=row["event_time"],
        actor=row["actor"],
        subject=row["subject"],
        action=row["action"],
        outcome=cast(Outcome, row["outcome"]),
        resource=row["resource"],
        request_id=row["request_id"],
        attributes=json.loads(row["attributes"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
