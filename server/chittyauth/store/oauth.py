"""SQL for authorization codes, refresh tokens and consent."""

from __future__ import annotations

import json
from dataclasses import dataclass

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction


@dataclass(frozen=True, slots=True)
class CodeRow:
    code_hash: str
    client_id: str
    subject: str
    chitty_id: str
    session_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    code_challenge: str
    family_id: str
    created_at: float
    expires_at: float
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class RefreshRow:
    token_hash: str
    family_id: str
    client_id: str
    subject: str
    chitty_id: str
    session_id: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    created_at: float
    expires_at: float
    used_at: float | None = None
    replaced_by: str = ""
    # This token and the access token issued with it, sealed under a key derived from the
    # parent token (``domain.rotation``); None once this token is used, or with no parent.
    issued_sealed: bytes | None = None


async def insert_code(tx: SqliteTransaction, row: CodeRow) -> None:
    await tx.execute(
        "INSERT INTO authorization_codes (code_hash, client_id, subject, chitty_id, session_id,"
        " redirect_uri, scopes, resources, code_challenge, family_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.code_hash, row.client_id, row.subject, row.chitty_id, row.session_id,
            row.redirect_uri, " ".join(row.scopes), json.dumps(list(row.resources)),
            row.code_challenge, row.family_id, row.created_at, row.expires_at,
        ),
    )  # fmt: skip


async def code_by_hash(tx: SqliteTransaction, code_hash: str) -> CodeRow | None:
    row = await tx.fetchone("SELECT * FROM authorization_codes WHERE code_hash = ?", (code_hash,))
    if row is None:
        return None
    return CodeRow(
        code_hash=row["code_hash"],
        client_id=row["client_id"],
        subject=row["subject"],
        chitty_id=row["chitty_id"],
        session_id=row["session_id"],
        redirect_uri=row["redirect_uri"],
        scopes=tuple(row["scopes"].split()),
        resources=tuple(json.loads(row["resources"])),
        code_challenge=row["code_challenge"],
        family_id=row["family_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
    )


async def mark_code_used(tx: SqliteTransaction, code_hash: str) -> bool:
    """Marks a code used; False when it already was (the caller lost a race or a replay)."""
    cursor = await tx.execute(
        "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
        (tx.now, code_hash),
    )
    return cursor.rowcount == 1


async def insert_refresh(tx: SqliteTransaction, row: RefreshRow) -> None:
    await tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, subject, chitty_id,"
        " session_id, scopes, resources, created_at, expires_at, issued_sealed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.token_hash, row.family_id, row.client_id, row.subject, row.chitty_id,
            row.session_id, " ".join(row.scopes), json.dumps(list(row.resources)),
            row.created_at, row.expires_at, row.issued_sealed,
        ),
    )  # fmt: skip


async def refresh_by_hash(tx: SqliteTransaction, token_hash: str) -> RefreshRow | None:
    row = await tx.fetchone("SELECT * FROM refresh_tokens WHERE token_hash = ?", (token_hash,))
    if row is None:
        return None
    return RefreshRow(
        token_hash=row["token_hash"],
        family_id=row["family_id"],
        client_id=row["client_id"],
        subject=row["subject"],
        chitty_id=row["chitty_id"],
        session_id=row["session_id"],
        scopes=tuple(row["scopes"].split()),
        resources=tuple(json.loads(row["resources"])),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        replaced_by=row["replaced_by"],
        issued_sealed=None if row["issued_sealed"] is None else bytes(row["issued_sealed"]),
    )


async def mark_refresh_used(tx: SqliteTransaction, token_hash: str, replaced_by: str) -> bool:
    """Rotates ``token_hash`` once: False when it was already used (a retry or a replay).

    Its own sealed pair is wiped in the same statement: once a token is used, a retry of its
    parent can no longer be answered (the chain has moved on).
    """
    cursor = await tx.execute(
        "UPDATE refresh_tokens SET used_at = ?, replaced_by = ?, issued_sealed = NULL"
        " WHERE token_hash = ? AND used_at IS NULL",
        (tx.now, replaced_by, token_hash),
    )
    return cursor.rowcount == 1


async def forget_sealed(tx: SqliteTransaction, family_id: str) -> None:
    """Wipes every sealed successor pair of a family (it was revoked)."""
    await tx.execute(
        "UPDATE refresh_tokens SET issued_sealed = NULL"
        " WHERE family_id = ? AND issued_sealed IS NOT NULL",
        (family_id,),
    )


async def family_expiry(tx: SqliteTransaction, family_id: str) -> float:
    """The latest expiry of any refresh token of a family (0 when none)."""
    row = await tx.fetchone(
        "SELECT COALESCE(MAX(expires_at), 0) FROM refresh_tokens WHERE family_id = ?",
        (family_id,),
    )
    return float(row[0]) if row else 0.0


async def record_consent(
    tx: SqliteTransaction, chitty_id: str, client_id: str, scopes: tuple[str, ...]
) -> None:
    existing = await tx.fetchone(
        "SELECT scopes FROM consents WHERE chitty_id = ? AND client_id = ?",
        (chitty_id, client_id),
    )
    merged = sorted(set(scopes) | set(existing["scopes"].split() if existing else ()))
    await tx.execute(
        "INSERT INTO consents (chitty_id, client_id, scopes, granted_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (chitty_id, client_id) DO UPDATE SET scopes = excluded.scopes,"
        " granted_at = excluded.granted_at",
        (chitty_id, client_id, " ".join(merged), tx.now),
    )


async def consented_scopes(reader: SqliteReader, chitty_id: str, client_id: str) -> set[str]:
    row = await reader.fetchone(
        "SELECT scopes FROM consents WHERE chitty_id = ? AND client_id = ?",
        (chitty_id, client_id),
    )
    return set(row["scopes"].split()) if row else set()


async def consent(reader: SqliteReader, chitty_id: str, client_id: str) -> frozenset[str] | None:
    """The scopes ``chitty_id`` consented to for ``client_id``; None when they never did."""
    row = await reader.fetchone(
        "SELECT scopes FROM consents WHERE chitty_id = ? AND client_id = ?",
        (chitty_id, client_id),
    )
    return frozenset(row["scopes"].split()) if row else None
