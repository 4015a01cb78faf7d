"""What the domain needs from durable storage.

A backend (SQLite now, PostgreSQL for several replicas) implements ``Store``. Every multi-row
change happens inside one ``Transaction``: the change, its change-log entry and its audit
record commit together or not at all. Ids and times come from the service, never from the
database, so both backends behave the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Outcome = Literal["success", "failure"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit record to append; never holds a secret (ids and hash prefixes only)."""

    actor: str
    subject: str
    action: str
    outcome: Outcome
    resource: str = ""
    request_id: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredAuditEvent:
    """An audit record as stored, with its place in the chain."""

    seq: int
    event_time: float
    actor: str
    subject: str
    action: str
    outcome: Outcome
    resource: str
    request_id: str
    attributes: Mapping[str, str]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the ordered change log."""

    seq: int
    kind: str
    key: str
    payload: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for listing audit events; empty strings and None mean "any"."""

    subject: str = ""
    actor: str = ""
    action: str = ""
    outcome: Outcome | None = None
    start_time: float | None = None
    end_time: float | None = None
    after_seq: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of recomputing the audit chain."""

    valid: bool
    checked: int
    first_bad_seq: int = 0
    problem: str = ""


class Transaction(Protocol):
    """One unit of durable work. Reads inside it see its own writes."""

    async def append_change(self, kind: str, key: str, payload: Mapping[str, Any]) -> int:
        """Adds a change-log entry; returns its sequence number."""
        ...

    async def audit(self, record: AuditRecord) -> StoredAuditEvent:
        """Appends an audit record to the chain, in this transaction."""
        ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` after the transaction commits (never after a rollback)."""
        ...


class Store(Protocol):
    """The durable state of ChittyAuth."""

    async def open(self) -> None:
        """Connects and applies pending migrations."""
        ...

    async def close(self) -> None:
        """Closes every connection; idempotent."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed on normal exit, rolled back on an exception."""
        ...

    async def schema_version(self) -> int:
        """The highest migration applied."""
        ...

    async def changes_after(
        self, seq: int, *, kinds: tuple[str, ...] = (), limit: int = 1000
    ) -> list[Change]:
        """Change-log entries with a sequence number above ``seq``, in order."""
        ...

    async def first_change_seq(self) -> int:
        """The oldest sequence number still kept (0 when the log is empty)."""
        ...

    async def last_change_seq(self) -> int:
        """The newest sequence number (0 when the log is empty)."""
        ...

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` after every commit in this process."""
        ...

    async def prune_changes(self, before: float) -> int:
        """Deletes change-log entries older than ``before``; returns how many."""
        ...

    async def list_audit_events(self, query: AuditQuery) -> list[StoredAuditEvent]:
        """Audit events matching ``query``, oldest first."""
        ...

    async def verify_audit_log(self) -> AuditVerification:
        """Recomputes every hash and link of the audit chain."""
        ...
