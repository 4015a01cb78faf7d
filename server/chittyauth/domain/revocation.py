"""In-memory revocation sets: what Validate consults on every call, with no I/O.

Loaded from the ``revocations`` table at start, then kept current two ways: a revocation made
in this process is applied the moment its transaction commits, and one made elsewhere (another
replica, the CLI) arrives through the change log (kind ``revocation.added``).
"""

from __future__ import annotations

from collections.abc import Sequence

from chittyauth.store.protocol import Change

KINDS = ("jti", "sid", "family", "api_key", "client")
CHANGE_KIND = "revocation.added"


class RevocationSets:
    """Revoked jti / session / refresh family / API key / client ids, each with an expiry."""

    def __init__(self) -> None:
        self._sets: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
        # Plain views for the hot path: `in` on a dict is all Validate does.
        self.jti = self._sets["jti"]
        self.sid = self._sets["sid"]
        self.family = self._sets["family"]
        self.api_key = self._sets["api_key"]
        self.client = self._sets["client"]

    def add(self, kind: str, value: str, until: float) -> None:
        bucket = self._sets[kind]
        if bucket.get(value, 0.0) < until:
            bucket[value] = until

    def any_of(self, links: Sequence[tuple[str, str]]) -> bool:
        """Whether any (kind, value) of ``links`` is revoked (a derived token's sources)."""
        sets = self._sets
        return any(value in sets[kind] for kind, value in links)

    def load(self, rows: Sequence[tuple[str, str, float]]) -> None:
        # ``add`` inlined: start-up loads every live revocation through here.
        sets = self._sets
        for kind, value, until in rows:
            bucket = sets.get(kind)
            if bucket is not None and bucket.get(value, 0.0) < until:
                bucket[value] = until

    def apply(self, changes: Sequence[Change]) -> None:
        """Change-feed subscriber for ``revocation.`` changes."""
        for change in changes:
            payload = change.payload
            kind = str(payload.get("kind", ""))
            if kind in self._sets:
                self.add(kind, str(payload["value"]), float(payload["until"]))

    def prune(self, now: float) -> int:
        """Forgets revocations whose every covered token has expired."""
        removed = 0
        for bucket in self._sets.values():
            stale = [value for value, until in bucket.items() if until <= now]
            for value in stale:
                del bucket[value]
            removed += len(stale)
        return removed

    def size(self) -> int:
        return sum(len(bucket) for bucket in self._sets.values())
