"""Auditing a refused call: one failure record, in a transaction of its own."""

from __future__ import annotations

from collections.abc import Mapping

from chittyauth.domain.errors import DomainError
from chittyauth.store.protocol import AuditRecord, Store

# Ids in refusal records often come from the caller's input: bound them.
MAX_AUDITED_ID = 128


def bounded(value: str) -> str:
    """``value`` cut to MAX_AUDITED_ID characters, or "unknown" when empty."""
    return value[:MAX_AUDITED_ID] or "unknown"


async def audit_refusal(
    store: Store,
    refusal: DomainError,
    *,
    action: str,
    actor: str,
    subject: str = "",
    resource: str = "",
    request_id: str = "",
    attributes: Mapping[str, str] | None = None,
) -> None:
    """Records that ``refusal`` answered a call: the refused call wrote nothing else, so the
    record commits alone. ``subject`` defaults to ``actor``; both are bounded."""
    async with store.transaction() as tx:
        await tx.audit(
            AuditRecord(
                actor=bounded(actor),
                subject=bounded(subject or actor),
                action=action,
                outcome="failure",
                resource=resource,
                request_id=request_id,
                attributes={"reason": refusal.reason, **(attributes or {})},
            )
        )
