"""Resolving the caller of an RPC from its bearer credential."""

from __future__ import annotations

from typing import Protocol

from chittyauth.domain.errors import Unauthenticated
from chittyauth.domain.principal import Principal
from chittyauth.rpc.context import current_call


class PrincipalResolver(Protocol):
    """Turns a bearer credential into a Principal (in memory; raises Unauthenticated)."""

    def principal_for(self, bearer: str) -> Principal: ...


def caller(resolver: PrincipalResolver) -> Principal:
    """The authenticated caller of the current RPC; UNAUTHENTICATED when there is none."""
    info = current_call()
    if info.principal is not None:
        return info.principal
    bearer = info.bearer
    if not bearer:
        raise Unauthenticated("this call needs a bearer token", reason="MISSING_CREDENTIALS")
    return resolver.principal_for(bearer)
