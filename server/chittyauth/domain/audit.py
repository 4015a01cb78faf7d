"""Auditing a refused call: one failure record, in a transaction of its own."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chittyauth.domain import policy
from chittyauth.domain.errors import DomainError, PermissionDenied
from chittyauth.domain.principal import Principal
from chittyauth.store.protocol import AuditRecord, Store

log = logging.getLogger(__name__)

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


async def admit(
    store: Store | None, rule: policy.Rule, principal: Principal, *, request_id: str = ""
) -> None:
    """``policy.admit`` for a resolved caller, auditing a refusal (every transport's gate).

    Raises:
        PermissionDenied: as ``policy.admit``; the refusal is recorded first.
    """
    try:
        policy.admit(rule, principal)
    except PermissionDenied as refusal:
        if store is not None:
            try:
                await audit_refusal(
                    store, refusal, action=rule.audit or policy.operation_name(rule.operation),
                    actor=principal.subject, request_id=request_id,
                    attributes={"client_id": principal.client_id,
                                "kind": policy.kind_of(principal).value},
                )  # fmt: skip
            except Exception:  # the refusal itself must still reach the caller
                log.exception("cannot audit a refused call", extra={"action": rule.operation})
        raise
