"""``chittyauth audit verify|export``: work on the database file directly.

Both refuse a store path where no database exists (exit 2): opening it would create an empty
database and report an empty, "intact" log. A store that cannot be opened exits 1 with one
line. ``export`` stopped by its reader (``| head``) ends quietly with 141 (128 + SIGPIPE), as
the standard tools do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

from chittyauth.clock import SystemClock
from chittyauth.config import Config
from chittyauth.domain.errors import DomainError
from chittyauth.store.protocol import AuditQuery
from chittyauth.store.sqlite import SqliteStore

EXIT_NO_DATABASE = 2
EXIT_STORE_FAULT = 1
EXIT_PIPE_CLOSED = 128 + 13  # SIGPIPE


async def audit_verify(config: Config, out: TextIO = sys.stdout) -> int:
    """Recomputes the chain; exit 0 when intact, 1 naming the first bad record."""
    store = _existing_store(config)
    if store is None:
        return EXIT_NO_DATABASE
    try:
        await store.open()
        result = await store.verify_audit_log()
    except DomainError as exc:
        print(f"chittyauth: {exc.message}", file=sys.stderr)
        return EXIT_STORE_FAULT
    finally:
        await store.close()
    if result.valid:
        print(f"audit log intact: {result.checked} records verified", file=out)
        return 0
    print(
        f"audit log BROKEN at record {result.first_bad_seq}: {result.problem}"
        f" ({result.checked} records verified before it)",
        file=out,
    )
    return 1


async def audit_export(config: Config, out: TextIO = sys.stdout) -> int:
    """Writes every audit record as one JSON object per line, oldest first."""
    store = _existing_store(config)
    if store is None:
        return EXIT_NO_DATABASE
    try:
        await store.open()
        await _export(store, out)
    except DomainError as exc:
        print(f"chittyauth: {exc.message}", file=sys.stderr)
        return EXIT_STORE_FAULT
    except BrokenPipeError:
        _silence(out)
        return EXIT_PIPE_CLOSED
    finally:
        await store.close()
    return 0


async def _export(store: SqliteStore, out: TextIO) -> None:
    after = 0
    while True:
        batch = await store.list_audit_events(AuditQuery(after_seq=after, limit=1000))
        for event in batch:
            record = {
                "sequence": event.seq,
                "event_time": event.event_time,
                "actor": event.actor,
                "subject": event.subject,
                "action": event.action,
                "outcome": event.outcome,
                "resource": event.resource,
                "request_id": event.request_id,
                "attributes": dict(event.attributes),
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        if len(batch) < 1000:
            out.flush()  # a closed pipe shows here, not in the interpreter's last flush
            return
        after = batch[-1].seq


def _existing_store(config: Config) -> SqliteStore | None:
    """The store at the configured path, or None (with a message) when no database is there."""
    path = Path(config.store.path)
    if not path.is_file():
        print(
            f"chittyauth: no database at {path} (set [store] path or CHITTYAUTH_STORE__PATH)",
            file=sys.stderr,
        )
        return None
    return SqliteStore(path, SystemClock(), busy_timeout_ms=config.store.busy_timeout_ms)


def _silence(out: TextIO) -> None:
    """Points ``out``'s descriptor at /dev/null, so the buffered rest is dropped at exit
    instead of raising BrokenPipeError again from the interpreter's final flush."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test's StringIO): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
