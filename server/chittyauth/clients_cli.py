"""``chittyauth clients create``: register a client directly in the database.

This is the second way to the first administrator (the clients file's bootstrap entry is the
other): ``--admin`` gives the client the ``chittyauth:admin`` scope and the client_credentials
grant. The secret is printed once, on standard output, and never again.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from chittyauth.clock import Clock, SystemClock
from chittyauth.config import Config
from chittyauth.domain.clients import (
    GRANT_CLIENT_CREDENTIALS,
    ClientAdmin,
    ClientRegistry,
    ClientSpec,
)
from chittyauth.domain.errors import DomainError, FailedPrecondition
from chittyauth.domain.principal import ADMIN_SCOPE
from chittyauth.store.sqlite import SqliteStore
from chittyauth.store.tokens import live_revocations

ACTOR = "system:cli"


async def clients_create(
    config: Config,
    *,
    client_id: str = "",
    name: str,
    kind: str = "service",
    scopes: Sequence[str] = (),
    admin: bool = False,
    confidential: bool = True,
    grant_types: Sequence[str] = (),
    redirect_uris: Sequence[str] = (),
    server_id: str = "",
    capabilities: Sequence[str] = (),
    clock: Clock | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Creates a client in ``config``'s database and prints its id and (once) its secret.

    Args:
        config: where the database is.
        client_id: the id; a fresh ``cli_…`` id when empty.
        name: the display name.
        kind: linked_app | mcp_server | service.
        scopes: the allowed scopes.
        admin: add ``chittyauth:admin`` and the client_credentials grant (and be confidential).
        confidential: whether the client gets a secret.
        grant_types: RFC grant_type values; empty for the kind's defaults.
        redirect_uris: exact redirect URIs.
        server_id: for an MCP server (defaults to the client id).
        capabilities: for an MCP server.
        clock: time source (tests pin it).
        out: where the id and secret are printed (default stdout).
        err: where an error is printed (default stderr).

    Returns:
        0 on success, 1 when the client cannot be created (the message says why).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    allowed = list(dict.fromkeys(scopes))
    grants = list(dict.fromkeys(grant_types))
    if admin:
        confidential = True
        if ADMIN_SCOPE not in allowed:
            allowed.append(ADMIN_SCOPE)
        # Every kind's default grants but a linked app's include client_credentials.
        if (grants or kind == "linked_app") and GRANT_CLIENT_CREDENTIALS not in grants:
            grants.append(GRANT_CLIENT_CREDENTIALS)
    spec = ClientSpec(
        display_name=name,
        kind=kind,
        confidential=confidential,
        redirect_uris=tuple(redirect_uris),
        allowed_scopes=tuple(allowed),
        grant_types=tuple(grants),
        server_id=server_id,
        capabilities=tuple(capabilities),
    )
    store = SqliteStore(
        config.store.path, clock or SystemClock(), busy_timeout_ms=config.store.busy_timeout_ms
    )
    try:
        await store.open()
        if client_id:
            await _refuse_recently_deleted(store, client_id)
        issued = await ClientAdmin(store, ClientRegistry(store)).create_trusted(
            ACTOR, spec, client_id=client_id, source="cli"
        )
    except DomainError as exc:
        print(f"chittyauth: {exc.message}", file=err)
        return 1
    finally:
        await store.close()
    print(f"client_id: {issued.client.client_id}", file=out)
    if issued.secret:
        print(f"client_secret: {issued.secret}", file=out)
        print("The secret is shown only now; store it safely.", file=out)
    return 0


async def _refuse_recently_deleted(store: SqliteStore, client_id: str) -> None:
    """Tokens of a deleted client with this id may still be alive; do not reuse it yet."""
    async with store.read() as reader:
        live = await live_revocations(reader, store.clock.now())
    if ("client", client_id) in {(kind, value) for kind, value, _ in live}:
        raise FailedPrecondition(
            f"client id {client_id} was deleted recently; choose another id",
            reason="CLIENT_ID_RECENTLY_DELETED",
        )
