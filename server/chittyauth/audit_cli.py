"""``chittyauth audit verify|export``: work on the database file directly."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from chittyauth.clock import SystemClock
from chittyauth.config import Config
from chittyauth.store.protocol import AuditQuery
from chittyauth.store.sqlite import SqliteStore


async def audit_verify(config: Config, out: TextIO = sys.stdout) -> int:
    """Recomputes the chain; exit 0 when intact, 1 naming the first bad record."""
    store = SqliteStore(config.store.path, SystemClock())
    await store.open()
    try:
        result = await store.verify_audit_log()
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
    store = SqliteStore(config.store.path, SystemClock())
    await store.open()
    try:
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
                return 0
            after = batch[-1].seq
    finally:
        await store.close()
