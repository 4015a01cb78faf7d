"""Durable state behind the ``Store`` protocol; domain code never sees SQL."""

from __future__ import annotations

from chittyauth.store.protocol import AuditRecord, Change, Store, Transaction
from chittyauth.store.sqlite import SqliteStore

__all__ = ["AuditRecord", "Change", "SqliteStore", "Store", "Transaction"]
