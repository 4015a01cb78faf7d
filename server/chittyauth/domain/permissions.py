"""Permissions granted from one ChittyID to another: grant, check, list, revoke.

Matching rules (docs/permissions.md has the full table):

- permission: a grant of ``*`` covers every permission; ``docs:*`` covers every permission
  starting with ``docs:`` (``docs:read``, ``docs:share:external``); anything else covers
  exactly itself.
- resource: a grant for ``''`` or ``*`` covers every resource; ``projects/a/*`` covers every
  resource starting with ``projects/a/`` (not ``projects/a`` itself); anything else covers
  exactly itself. A check with an empty resource asks about every resource, so only a grant
  for every resource allows it.

Grants, revocations and every refusal are audited (``permission.grant``, ``permission.revoke``)
with change-log entries ``permission.granted`` / ``permission.revoked``. CheckPermission is a
single indexed query over the grantee's live grants and is not audited (it changes nothing).
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chittyauth.clock import Clock
from chittyauth.domain import paging, policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.errors import (
    DomainError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from chittyauth.domain.ids import new_id
from chittyauth.domain.principal import Principal
from chittyauth.store import permissions as repo
from chittyauth.store.permissions import GrantRow
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore

__all__ = ["GrantRow", "PermissionPage", "PermissionRegistry", "covers"]

GRANT_SCOPE = "authorizations:grant"
CHECK_SCOPE = "authorizations:check"
MAX_PERMISSION_CHARS = 128
MAX_RESOURCE_CHARS = 512
MAX_CHITTY_ID_CHARS = 128
_PERMISSION = re.compile(r"\*|[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*(:\*)?")
_RESOURCE_CHARS = re.compile(r"[^\s\x00-\x1f\x7f*]+")
_GRANT_ID = re.compile(r"prm_[A-Za-z0-9_-]{1,64}")


class ChittyIdAuthority(Protocol):
    """What grants need of the authority client: a verdict on a ChittyID (fail closed)."""

    async def validate(self, chitty_id: str) -> Any: ...


@dataclass(frozen=True)
class PermissionPage:
    grants: tuple[GrantRow, ...]
    next_page_token: str


def check_permission_name(permission: str, field: str = "permission") -> str:
    if not permission or len(permission) > MAX_PERMISSION_CHARS:
        raise InvalidRequest(f"{field} must be 1 to {MAX_PERMISSION_CHARS} characters")
    if not _PERMISSION.fullmatch(permission):
        raise InvalidRequest(
            f"{field} must look like `area:action`, `area:*` or `*`",
            reason="INVALID_PERMISSION",
        )
    return permission


def check_resource(resource: str) -> str:
    """'' / ``*`` (every resource), ``prefix/*`` or an exact name without wildcards, in
    canonical form (``canonical_resource_problem``)."""
    if resource in ("", "*"):
        return ""
    if len(resource) > MAX_RESOURCE_CHARS:
        raise InvalidRequest(f"resource must be at most {MAX_RESOURCE_CHARS} characters")
    body = resource[:-2] if resource.endswith("/*") else resource
    if not _RESOURCE_CHARS.fullmatch(body):
        raise InvalidRequest(
            "resource must be printable, without spaces, and `*` only as a trailing `/*`",
            reason="INVALID_RESOURCE",
        )
    problem = canonical_resource_problem(body)
    if problem:
        raise InvalidRequest(f"resource is not canonical: {problem}", reason="INVALID_RESOURCE")
    return resource


# A resource is matched by prefix, so `projects/a/*` would
# cover `projects/a/../b`, which a resource server may well resolve to `projects/b`.
_DOT_SEGMENTS = frozenset({".", ".."})
# Characters an escape must not spell: separators, dots, and `%` itself (double encoding).
_ESCAPED_FORBIDDEN = frozenset(b"/.\\%")
_ESCAPE = re.compile(r"%(?P<hex>[0-9A-Fa-f]{2})?")
# What NFKC folding must not add (fullwidth solidus, one- and two-dot leaders, ...).
_FOLDED = ("/", "\\", ".", "%")


def canonical_resource_problem(resource: str) -> str:
    """Why ``resource`` (without its trailing ``/*``) is not canonical; '' when it is.

    Refused: a backslash (a separator elsewhere); an empty segment (``a//b``, a leading or
    trailing ``/``); a ``.`` or ``..`` segment; a ``%`` not followed by two hex digits; an
    escape of ``/``, ``.``, ``\\`` or ``%``; escapes that are not valid UTF-8 (overlong forms
    of those characters); characters that compatibility folding (NFKC) turns into them.
    """
    if "\\" in resource:
        return "a backslash is not allowed"
    segments = resource.split("/")
    if any(not segment for segment in segments):
        return "empty path segment"
    if any(segment in _DOT_SEGMENTS for segment in segments):
        return "`.` or `..` path segment"
    return _escape_problem(resource) or _folding_problem(resource)


def _escape_problem(resource: str) -> str:
    if "%" not in resource:
        return ""
    for match in _ESCAPE.finditer(resource):
        if match.group("hex") is None:
            return "`%` must start a two-digit escape"
        if int(match.group("hex"), 16) in _ESCAPED_FORBIDDEN:
            return "percent-encoded separator, dot or percent sign"
    try:
        urllib.parse.unquote_to_bytes(resource).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return "percent-encoding that is not valid UTF-8"
    return ""


def _folding_problem(resource: str) -> str:
    if resource.isascii():
        return ""
    folded = unicodedata.normalize("NFKC", resource)
    if any(folded.count(c) != resource.count(c) for c in _FOLDED):
        return "a character that folds into a separator, dot or percent sign"
    return ""


def _check_chitty_id(chitty_id: str, field: str) -> str:
    if not chitty_id or len(chitty_id) > MAX_CHITTY_ID_CHARS:
        raise InvalidRequest(f"{field} must be 1 to {MAX_CHITTY_ID_CHARS} characters")
    return chitty_id


def permission_covers(granted: str, requested: str) -> bool:
    if granted == "*" or granted == requested:
        return True
    return granted.endswith(":*") and requested.startswith(granted[:-1])


def resource_covers(granted: str, requested: str) -> bool:
    """Whether a grant's resource covers the requested one ('' asks about every resource)."""
    if granted in ("", "*"):
        return True
    if not requested:
        return False
    if granted == requested:
        return True
    return granted.endswith("/*") and requested.startswith(granted[:-1])


def covers(grant: GrantRow, permission: str, resource: str) -> bool:
    return permission_covers(grant.permission, permission) and resource_covers(
        grant.resource, resource
    )


def _own_id(principal: Principal) -> str:
    return policy.acting_for(principal)


class PermissionRegistry:
    """The PermissionService rules over the store and the ChittyID authority."""

    def __init__(self, store: SqliteStore, authority: ChittyIdAuthority, clock: Clock) -> None:
        self._store = store
        self._authority = authority
        self._clock = clock

    async def grant(
        self,
        principal: Principal,
        *,
        grantee: str,
        permission: str,
        resource: str,
        expires_at: float | None,
        grantor: str,
        request_id: str,
    ) -> GrantRow:
        """Records a grant from ``grantor`` (default: the caller) to ``grantee``.

        Raises:
            PermissionDenied: the caller lacks ``authorizations:grant``, ``grant:{resource}``
                and admin, or names another grantor without being an admin.
            InvalidRequest: malformed ids, permission, resource, or an expiry in the past;
                reason ``INVALID_CHITTY_ID`` when the authority disowns an id.
            Unavailable: the authority cannot be reached; nothing is written.
        """
        try:
            grantee = _check_chitty_id(grantee, "grantee_chitty_id")
            permission = check_permission_name(permission)
            resource = check_resource(resource)
            grantor = grantor or _own_id(principal)
            _check_chitty_id(grantor, "grantor_chitty_id")
            self._require_grant_right(principal, resource, grantor)
            for chitty_id in dict.fromkeys((grantor, grantee)):
                info = await self._authority.validate(chitty_id)
                if not info.valid:
                    raise InvalidRequest(
                        "a ChittyID is not valid",
                        reason="INVALID_CHITTY_ID",
                        metadata={"chitty_id": chitty_id},
                    )
            async with self._store.transaction() as tx:
                if expires_at is not None and expires_at <= tx.now:
                    raise InvalidRequest("expire_time must be in the future")
                grant = GrantRow(
                    grant_id=new_id("prm"),
                    grantor=grantor,
                    grantee=grantee,
                    permission=permission,
                    resource=resource,
                    created_by=principal.subject,
                    created_at=tx.now,
                    expires_at=expires_at,
                    revoked_at=None,
                )
                await repo.insert_grant(tx, grant)
                await tx.append_change("permission.granted", grant.grant_id, {"grantee": grantee})
                await tx.audit(
                    AuditRecord(
                        actor=principal.subject,
                        subject=grantee,
                        action="permission.grant",
                        outcome="success",
                        resource=grant.grant_id,
                        request_id=request_id,
                        attributes={
                            "grantor": grantor,
                            "permission": permission,
                            "resource": resource,
                        },
                    )
                )
            return grant
        except DomainError as refusal:
            await self._audit_refusal(principal, "permission.grant", grantee, refusal, request_id)
            raise

    async def check(
        self, principal: Principal, chitty_id: str, permission: str, resource: str
    ) -> GrantRow | None:
        """The oldest live grant covering (permission, resource) for ``chitty_id``, or None.

        Raises:
            PermissionDenied: checking someone else without ``authorizations:check``,
                ``authorizations:grant`` or admin.
        """
        chitty_id = _check_chitty_id(chitty_id or _own_id(principal), "chitty_id")
        permission = check_permission_name(permission)
        if resource != "*":
            check_resource(resource)
        if chitty_id != _own_id(principal):
            policy.require_scope(principal, CHECK_SCOPE, GRANT_SCOPE)
        async with self._store.read() as reader:
            grants = await repo.live_grants_of(reader, chitty_id, self._clock.now())
        for grant in grants:
            if covers(grant, permission, "" if resource == "*" else resource):
                return grant
        return None

    async def list_grants(
        self,
        principal: Principal,
        chitty_id: str,
        *,
        page_size: int,
        page_token: str,
        include_inactive: bool,
    ) -> PermissionPage:
        """A page of the grants ``chitty_id`` holds (the caller's own, or any for an admin).

        Raises:
            PermissionDenied: another's grants without admin.
            InvalidRequest: a bad page size or page token.
        """
        chitty_id = _check_chitty_id(chitty_id or _own_id(principal), "chitty_id")
        if not policy.may_reach(principal, chitty_id):
            raise PermissionDenied("only an admin may list another's grants")
        size = paging.page_size(page_size)
        scope = (chitty_id, include_inactive)
        after = paging.decode_page_token(page_token, scope)
        async with self._store.read() as reader:
            rows = await repo.page_of(
                reader,
                chitty_id,
                after=after,
                limit=size + 1,
                include_inactive=include_inactive,
                now=self._clock.now(),
            )
        more = len(rows) > size
        rows = rows[:size]
        token = ""
        if more:
            last = rows[-1]
            token = paging.encode_page_token(last.created_at, last.grant_id, scope)
        return PermissionPage(tuple(rows), token)

    async def revoke(self, principal: Principal, grant_id: str, *, request_id: str) -> GrantRow:
        """Revokes a grant (its grantor or an admin); revoking it again returns it unchanged.

        Raises:
            NotFound: no such grant, or the caller may not see it.
        """
        try:
            if not _GRANT_ID.fullmatch(grant_id):
                raise NotFound("no such grant")
            async with self._store.transaction() as tx:
                grant = await repo.get_grant(tx, grant_id)
                if grant is None or not policy.may_reach(principal, grant.grantor):
                    raise NotFound("no such grant")
                if grant.revoked_at is not None:
                    return grant
                await repo.mark_revoked(tx, grant_id, tx.now, principal.subject)
                await tx.append_change("permission.revoked", grant_id, {"grantee": grant.grantee})
                await tx.audit(
                    AuditRecord(
                        actor=principal.subject,
                        subject=grant.grantee,
                        action="permission.revoke",
                        outcome="success",
                        resource=grant_id,
                        request_id=request_id,
                    )
                )
                revoked = await repo.get_grant(tx, grant_id)
            assert revoked is not None
            return revoked
        except DomainError as refusal:
            await self._audit_refusal(principal, "permission.revoke", "", refusal, request_id)
            raise

    def _require_grant_right(self, principal: Principal, resource: str, grantor: str) -> None:
        if not policy.may_reach(principal, grantor):
            raise PermissionDenied(
                "only an admin may grant on behalf of another ChittyID",
                reason="GRANTOR_MISMATCH",
            )
        scopes: Sequence[str] = (GRANT_SCOPE, f"grant:{resource or '*'}")
        policy.require_scope(principal, *scopes)

    async def _audit_refusal(
        self,
        principal: Principal,
        action: str,
        subject: str,
        refusal: DomainError,
        request_id: str,
    ) -> None:
        await audit_refusal(
            self._store, refusal, action=action, actor=principal.subject,
            subject=subject[:MAX_CHITTY_ID_CHARS] or principal.subject, request_id=request_id,
        )  # fmt: skip
