"""The embedded backend: SQLite through aiosqlite, in WAL mode.

One writer connection, serialised by an asyncio lock, runs every transaction as
``BEGIN IMMEDIATE … COMMIT``; a second, read-only connection serves reads that must not see a
transaction in progress. Migrations are numbered SQL files applied in order, each in its own
transaction, and recorded in ``schema_migrations``.

A SQLite failure that is not a bug of ours leaves the store as a domain error (``store_fault``):
the write lock held by another process past the busy timeout is ``StoreUnavailable`` (reason
``STORE_BUSY``), a full disk ``StoreFull``, an I/O or file fault ``StoreUnavailable``. While
writes fail so, ``writable`` is False and a probe retries a one-row write every
``probe_interval_s`` until one commits; listeners hear both changes (the server's health).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from chittyauth.clock import Clock
from chittyauth.domain.errors import DomainError, StoreFull, StoreUnavailable, Unavailable
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
_T = TypeVar("_T")
_UPSERT_HEAD = (
    "INSERT INTO meta (name, value) VALUES ('audit_head', ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
_READ_HEAD = "SELECT value FROM meta WHERE name = 'audit_head'"
# A batch stops taking units at this size so a steady stream of writers still gets commits.
MAX_BATCH_UNITS = 128
# The write the probe retries while the store cannot write: one small row, really committed.
_UPSERT_PROBE = (
    "INSERT INTO meta (name, value) VALUES ('store_probe', ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
# SQLite's primary result codes (the low byte of an extended code such as SQLITE_IOERR_WRITE).
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_SQLITE_FULL = 13
_STORE_UNAVAILABLE_CODES = frozenset(
    {
        8,  # SQLITE_READONLY: the file or its directory is not writable
        10,  # SQLITE_IOERR
        11,  # SQLITE_CORRUPT
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        26,  # SQLITE_NOTADB
    }
)
WritableListener = Callable[[bool], None]


def store_fault(exc: BaseException) -> DomainError | None:
    """The domain error a SQLite failure is to a caller, or None when it is not a store fault
    (a constraint or a statement of ours: a bug, left to surface as such).

    The caller's message never carries SQLite's own text; the store logs that.
    """
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    primary = code & 0xFF
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreUnavailable(
            "the store is busy: another process holds its write lock",
            reason="STORE_BUSY",
            retry_after=1.0,
        )
    if primary == _SQLITE_FULL:
        return StoreFull("the store's disk is full", retry_after=5.0)
    if primary in _STORE_UNAVAILABLE_CODES:
        return StoreUnavailable("the store cannot be read or written", retry_after=5.0)
    return None


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

    def __init__(
        self,
        store: SqliteStore,
        conn: aiosqlite.Connection,
        audit_head: tuple[int, str] | None = None,
    ) -> None:
        self._store = store
        self.conn = conn
        # The sqlite3 connection itself (the writer is opened with check_same_thread off).
        self._raw: sqlite3.Connection = conn._conn
        self.now = store.clock.now()
        # Inside a batch (see ``SqliteStore.transaction``) the head was read under the
        # batch's write lock and is kept current by every unit before this one.
        self._audit_head = audit_head if audit_head is not None else store._audit_head
        self._head_read = audit_head is not None
        self._batched = audit_head is not None
        self.after_commit: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` once the transaction has committed (never on rollback)."""
        self.after_commit.append(callback)

    # Statements of a unit run directly on the event loop's thread: inside a transaction that
    # already holds the write lock they do not wait for locks or disk (WAL, no fsync before
    # COMMIT), so a thread hop would cost more than the statement. Only BEGIN (may wait for
    # another process's lock), COMMIT (fsync), bulk deletes and executemany go to the
    # connection's thread.

    async def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        if sql.lstrip()[:6].upper() == "DELETE":
            return await _in_thread(self.conn, lambda: self._raw.execute(sql, params))
        return self._raw.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await _in_thread(self.conn, lambda: self._raw.executemany(sql, rows))

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        row: aiosqlite.Row | None = self._raw.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        return list(self._raw.execute(sql, params).fetchall())

    async def append_change(self, kind: str, key: str, payload: Mapping[str, Any]) -> int:
        cursor = self._raw.execute(
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
        self._raw.execute(
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
        if not self._batched:
            # In a batch the head row is written once, just before the batch commits.
            self._raw.execute(_UPSERT_HEAD, (f"{seq}:{digest}",))
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


def _in_thread(conn: aiosqlite.Connection, fn: Callable[[], _T]) -> Awaitable[_T]:
    """Runs ``fn`` on the connection's thread, in order with its statements: several
    statements for one thread hop. ``fn`` uses ``conn._conn``, the sqlite3 connection."""
    return cast("Awaitable[_T]", conn._execute(fn))  # type: ignore[no-untyped-call]


class _Batch:
    """Units of work sharing one ``BEGIN IMMEDIATE … COMMIT`` (see ``transaction``)."""

    __slots__ = ("callbacks", "done", "head", "start_head", "units")

    def __init__(self, head: tuple[int, str]) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved here so a batch whose callers were all cancelled logs nothing.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.head = head
        self.start_head = head
        self.units = 0
        self.callbacks: list[Callable[[], None]] = []


class SqliteStore:
    """``Store`` on a SQLite file."""

    def __init__(
        self,
        path: str | Path,
        clock: Clock,
        *,
        busy_timeout_ms: int = 5000,
        probe_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        # Whether the last write committed (False from a store fault until a write commits).
        self._writable = True
        self._writable_listeners: list[WritableListener] = []
        self._probe_interval_s = probe_interval_s
        self._probe: asyncio.Task[None] | None = None
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # Group commit (see ``transaction``): the open batch, how many writers wait for the
        # lock, and the last COMMIT/rollback task the next unit must wait for.
        self._batch: _Batch | None = None
        self._waiting = 0
        self._savepoints = 0
        self._tail: asyncio.Future[Any] | None = None
        self._flushes: set[asyncio.Future[None]] = set()
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
            await self._take_write_lock()
            self._reader = await self._connect(readonly=True)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            fault = store_fault(exc)
            if fault is None:
                raise Unavailable(f"cannot open the database at {self.path}: {exc}") from exc
            message = f"cannot open the database at {self.path}: {_open_problem(fault)}"
            raise type(fault)(message, reason=fault.reason) from exc
        self._audit_head = await self._load_audit_head()

    async def _take_write_lock(self) -> None:
        """Takes and releases the write lock once, so a store that another process holds
        locked fails at start (within the busy timeout) rather than at the first write."""
        conn = self._require_writer()
        await conn.execute("BEGIN IMMEDIATE")
        await conn.execute("ROLLBACK")

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        # The writer's statements inside a transaction run on the event loop's thread (see
        # SqliteTransaction); aiosqlite's thread runs the rest, never at the same time.
        conn = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=readonly)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            if readonly:
                await conn.execute("PRAGMA query_only = ON")
            else:
                # Needs the write lock on a new file: may fail while another process has it.
                await conn.execute("PRAGMA journal_mode = WAL")
                # FULL: a commit is on disk before anything is acknowledged.
                await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await conn.close()  # its thread would otherwise keep the process alive
            raise
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
        """A write transaction; its changes are durable once the ``async with`` exits.

        Group commit: concurrent transactions run one after another (never interleaved) on
        the writer connection inside one shared ``BEGIN IMMEDIATE … COMMIT``, each under its
        own SAVEPOINT, so a burst of writers pays for one fsync. A unit that raises rolls
        back to its savepoint and gets its exception; the others still commit. The batch
        commits as soon as no other writer is waiting (or it reached ``MAX_BATCH_UNITS``),
        and nobody leaves the ``async with`` before that commit: reads inside see the unit's
        own writes, and ``on_commit`` callbacks run only after the real commit.

        Raises:
            Whatever the body raises (its work is rolled back), or the commit's error (the
            work of every unit in the batch is rolled back).
        """
        conn = self._require_writer()
        self._waiting += 1
        try:
            await self._write_lock.acquire()
        except BaseException:
            self._waiting -= 1
            self._flush_soon()
            raise
        self._waiting -= 1
        try:
            batch, savepoint = await self._enter_unit(conn)
            tx = SqliteTransaction(self, conn, batch.head)
            try:
                yield tx
                # Released at once: the sub-journal stays small and in memory; the unit's
                # work joins the batch, whose COMMIT decides its fate from here.
                conn._conn.execute(f"RELEASE {savepoint}")
            except BaseException as exc:
                try:
                    await self._undo_unit(conn, batch, savepoint)
                finally:
                    self._maybe_end_batch(conn, batch)
                fault = self._write_fault(exc)
                if fault is not None:
                    raise fault from exc
                raise
            batch.units += 1
            batch.head = tx._audit_head
            batch.callbacks.extend(tx.after_commit)
            self._maybe_end_batch(conn, batch)
        finally:
            self._write_lock.release()
        # Shielded: a caller that stops waiting does not stop the commit of the others.
        await asyncio.shield(batch.done)

    def _maybe_end_batch(self, conn: aiosqlite.Connection, batch: _Batch) -> None:
        if self._waiting == 0 or batch.units >= MAX_BATCH_UNITS:
            self._end_batch_soon(conn, batch)

    async def _enter_unit(self, conn: aiosqlite.Connection) -> tuple[_Batch, str]:
        """Opens a savepoint for a unit, starting a batch first when none is open."""
        if self._tail is not None and not self._tail.done():
            await asyncio.shield(self._tail)  # the previous batch's COMMIT/ROLLBACK
        self._savepoints += 1
        savepoint = f"unit_{self._savepoints}"
        batch = self._batch
        if batch is not None:
            try:
                conn._conn.execute(f"SAVEPOINT {savepoint}")
            except BaseException:
                await self._undo_unit(conn, batch, savepoint)
                raise
            return batch, savepoint
        if self._interrupted:
            await self._recover(conn)
        raw = conn._conn  # one thread hop for BEGIN + head + SAVEPOINT

        def begin() -> str | None:
            raw.execute("BEGIN IMMEDIATE")
            try:
                row = raw.execute(_READ_HEAD).fetchone()
                raw.execute(f"SAVEPOINT {savepoint}")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            return None if row is None else str(row[0])

        try:
            head_text = await _in_thread(conn, begin)
        except asyncio.CancelledError:
            # The statements still run on aiosqlite's thread: clean up before the next one.
            self._interrupted = True
            raise
        except sqlite3.Error as exc:
            fault = self._write_fault(exc)
            if fault is not None:
                raise fault from exc
            raise
        head = self._audit_head
        if head_text is not None:
            seq_text, digest_text = head_text.split(":", 1)
            head = (int(seq_text), digest_text)
        batch = self._batch = _Batch(head)
        return batch, savepoint

    async def _undo_unit(self, conn: aiosqlite.Connection, batch: _Batch, savepoint: str) -> None:
        """Rolls one unit back to its savepoint; shielded, so a cancelled caller still waits."""
        raw = conn._conn

        def undo() -> bool:
            if not raw.in_transaction:
                return False  # SQLite already rolled the whole transaction back
            try:
                raw.execute(f"ROLLBACK TO {savepoint}")
                raw.execute(f"RELEASE {savepoint}")
            except sqlite3.Error:
                raw.execute("ROLLBACK")
                return False
            return True

        task = asyncio.ensure_future(_in_thread(conn, undo))
        self._tail = task
        try:
            intact = await asyncio.shield(task)
        except asyncio.CancelledError:
            intact = True  # _tail makes the next unit wait for it; a failure shows there
            task.add_done_callback(lambda t: self._after_undo(t, batch))
            raise
        if not intact:
            self._fail_batch(batch, Unavailable("the write transaction was rolled back"))

    def _after_undo(self, task: asyncio.Future[bool], batch: _Batch) -> None:
        if task.cancelled() or task.exception() is not None or not task.result():
            self._fail_batch(batch, Unavailable("the write transaction was rolled back"))

    def _fail_batch(self, batch: _Batch, exc: BaseException) -> None:
        if self._batch is batch:
            self._batch = None
        if not batch.done.done():
            batch.done.set_exception(exc)

    def _end_batch_soon(self, conn: aiosqlite.Connection, batch: _Batch) -> None:
        """Closes the batch to new units and commits it in a task no caller can cancel."""
        if self._batch is not batch:
            return  # already failed or ended
        self._batch = None
        self._tail = asyncio.ensure_future(self._end_batch(conn, batch))

    def _flush_soon(self) -> None:
        """A writer gave up waiting: make sure an open batch does not wait for it."""
        batch = self._batch
        if batch is not None and self._waiting == 0:
            task = asyncio.ensure_future(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: _Batch) -> None:
        conn = self._require_writer()
        async with self._write_lock:
            if self._waiting == 0:
                self._end_batch_soon(conn, batch)

    async def _end_batch(self, conn: aiosqlite.Connection, batch: _Batch) -> None:
        raw = conn._conn
        head = batch.head
        write_head = batch.units > 0 and head != batch.start_head

        def finish() -> None:
            if not raw.in_transaction:
                raise Unavailable("the write transaction was rolled back")
            if batch.units == 0:
                raw.execute("ROLLBACK")
                return
            try:
                if write_head:
                    raw.execute(_UPSERT_HEAD, (f"{head[0]}:{head[1]}",))
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise

        try:
            await _in_thread(conn, finish)
        except BaseException as exc:
            batch.done.set_exception(self._write_fault(exc) or exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if batch.units == 0:
            batch.done.set_result(None)
            return
        self._audit_head = head
        self._set_writable(True)
        for callback in (*batch.callbacks, *self._commit_listeners):
            try:
                callback()
            except Exception:  # a listener's bug must not undo a committed change
                log.exception("commit listener failed")
        batch.done.set_result(None)

    async def _recover(self, conn: aiosqlite.Connection) -> None:
        """After a cancelled BEGIN: wait for it, then end any open transaction."""
        # aiosqlite runs statements in order, so this waits for the interrupted one.
        await conn.execute("SELECT 1")
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        self._interrupted = False

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` after every commit (the change feed uses it to wake up)."""
        self._commit_listeners.append(callback)

    # -- store faults ---------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """False from a write that failed by a store fault until a write commits again."""
        return self._writable

    def add_writable_listener(self, callback: WritableListener) -> None:
        """Calls ``callback(writable)`` whenever ``writable`` changes."""
        self._writable_listeners.append(callback)

    def _write_fault(self, exc: BaseException) -> DomainError | None:
        """The domain error for a failed write (see ``store_fault``); a fault marks the store
        unwritable and starts the probe."""
        fault = store_fault(exc)
        if fault is not None:
            if self._writable:
                # SQLite's text is for the operator, not the caller.
                log.warning("store cannot write", extra={"reason": fault.reason, "error": str(exc)})
            self._set_writable(False)
        return fault

    def _set_writable(self, writable: bool) -> None:
        if writable == self._writable:
            return
        self._writable = writable
        if writable:
            log.warning("store writable again")
        elif self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(
                self._probe_until_writable(), name="store-probe"
            )
        for listener in list(self._writable_listeners):
            try:
                listener(writable)
            except Exception:  # a listener's bug must not hide the fault from the caller
                log.exception("writable listener failed")

    async def _probe_until_writable(self) -> None:
        """Retries a one-row write until one commits: the store recovers with no traffic."""
        while not self._writable and self._writer is not None:
            await asyncio.sleep(self._probe_interval_s)
            try:
                async with self.transaction() as tx:
                    await tx.execute(_UPSERT_PROBE, (repr(self.clock.now()),))
            except (DomainError, sqlite3.Error):
                continue  # still failing (logged once, when it began)

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
        try:
            async with self.conn.execute(sql, params) as cursor:
                return await cursor.fetchone()
        except sqlite3.Error as exc:
            fault = _read_fault(exc)
            if fault is None:
                raise
            raise fault from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        try:
            async with self.conn.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            fault = _read_fault(exc)
            if fault is None:
                raise
            raise fault from exc


def _read_fault(exc: sqlite3.Error) -> DomainError | None:
    """A failed read as a domain error when it is a store fault (see ``store_fault``)."""
    fault = store_fault(exc)
    if fault is None:
        return None
    log.warning("store cannot read", extra={"reason": fault.reason, "error": str(exc)})
    return fault


def _open_problem(fault: DomainError) -> str:
    if fault.reason == "STORE_BUSY":
        return "another process holds its write lock"
    if isinstance(fault, StoreFull):
        return "its disk is full"
    return "it cannot be read or written (check the path, its permissions and the disk)"


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
