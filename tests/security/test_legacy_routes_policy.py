"""The historical HTTP routes are admitted by the same policy rows as their RPCs.

Before, ``GET /v1/authorizations/{chitty_id}`` and the other bearer routes resolved the caller
and called the domain directly: a linked app holding only ``mcp:read`` listed the person's
grants, which the gRPC ListPermissions refuses.
"""

from __future__ import annotations

import aiohttp

from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.http_server.test_legacy_routes import (  # the legacy routes' real server
    Mint,
    call,
    http,
    legacy_server,
    mint,
    url,
)

__all__ = ["http", "legacy_server", "mint", "url"]
PERSON = "AB-C-PEO-1234-P-56-H-7"


async def test_a_linked_app_reaches_no_legacy_route_of_the_person(
    http: aiohttp.ClientSession, url: str, mint: Mint, legacy_server: Server
) -> None:
    app = await mint(
        subject=PERSON, chitty_id=PERSON, client_id="app-x", token_use="linked_app",
        scopes=("mcp:read",), session_id="ses_1",
    )  # fmt: skip
    person = await mint(subject=PERSON, chitty_id=PERSON, token_use="portal", scopes=())

    status, body = await call(http, "GET", f"{url}/v1/authorizations/{PERSON}", token=app)
    assert (status, body["success"], body["reason"]) == (403, False, "INSUFFICIENT_SCOPE")
    check = {"chitty_id": PERSON, "permission": "documents:read", "resource": "case-42"}
    status, body = await call(http, "POST", f"{url}/v1/authorizations/check", token=app, json=check)
    assert (status, body["reason"]) == (403, "INSUFFICIENT_SCOPE")
    status, body = await call(http, "POST", f"{url}/v1/api-keys/generate", token=app, json={})
    assert (status, body["reason"]) == (403, "INSUFFICIENT_SCOPE")
    # Consent is the person's own: a linked app cannot approve another app.
    approve = {"app_id": "other-app", "chitty_id": PERSON, "redirect_uri": "https://x.example/cb"}
    status, body = await call(
        http, "POST", f"{url}/v1/mcp/linked-app/oauth", token=app, json=approve
    )
    assert (status, body["reason"]) == (403, "PRINCIPAL_NOT_ALLOWED")

    # The person's own token reads their grants.
    status, body = await call(http, "GET", f"{url}/v1/authorizations/{PERSON}", token=person)
    assert (status, body["authorizations"]) == (200, [])
    refusals = await legacy_server.store.list_audit_events(AuditQuery(outcome="failure"))
    assert [(e.attributes["client_id"], e.attributes["kind"]) for e in refusals] == [
        ("app-x", "delegate")
    ] * 4
