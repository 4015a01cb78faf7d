"""Introspection (RFC 7662 §4): a client learns about a token only if it may.

A client authenticated at /introspect gets ``active: true`` and the claims only for a token
addressed to it (its ``client_id`` is the token's, or its id is in ``aud``) or when it holds the
``introspect`` scope; for any other token the answer is ``{"active": false}``, exactly what an
unknown token gets, so nothing leaks. A bearer caller needs the ``introspect`` scope.
"""

from __future__ import annotations

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client

from chittyauth.app import Server
from tests.security.conftest import mint, register


async def _introspect(base: str, client_id: str, secret: str, token: str) -> dict[str, object]:
    async with AsyncOAuth2Client(client_id, secret) as oauth:
        response = await oauth.introspect_token(f"{base}/introspect", token=token)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, object] = response.json()
    return body


async def test_a_linked_app_does_not_learn_about_another_clients_token(
    server: Server, base: str
) -> None:
    snooper = await register(server, kind="linked_app", name="Snooper")
    victim = await register(server, kind="linked_app", name="Notes")
    token = await mint(server, client_id=victim.client_id, chitty_id="chitty-person-1")
    assert await _introspect(base, snooper.client_id, snooper.secret, token) == {"active": False}
    # The answer is the same for a token that does not exist: nothing tells them apart.
    assert await _introspect(base, snooper.client_id, snooper.secret, "eyJ.x.y") == {
        "active": False
    }
    # The token itself was not harmed, and its own client still sees it.
    own = await _introspect(base, victim.client_id, victim.secret, token)
    assert own["active"] is True
    assert own["client_id"] == victim.client_id


async def test_a_client_holding_introspect_sees_every_token(server: Server, base: str) -> None:
    resource_server = await register(server, scopes=("introspect",), name="Resource server")
    victim = await register(server, kind="linked_app", name="Notes")
    token = await mint(server, client_id=victim.client_id, chitty_id="chitty-person-1")
    body = await _introspect(base, resource_server.client_id, resource_server.secret, token)
    assert body["active"] is True
    assert body["client_id"] == victim.client_id
    assert body["sub"] == "chitty-person-1"


async def test_a_token_addressed_to_the_client_is_visible_to_it(server: Server, base: str) -> None:
    audience = await register(server, name="The audience")
    issuer_app = await register(server, kind="linked_app", name="Notes")
    token = await mint(server, client_id=issuer_app.client_id, audience=(audience.client_id,))
    body = await _introspect(base, audience.client_id, audience.secret, token)
    assert body["active"] is True
    assert body["aud"] in (audience.client_id, [audience.client_id])


async def test_the_answer_is_not_cached_across_callers(server: Server, base: str) -> None:
    # The encoded body of a verified token is cached; the decision must not be.
    owner = await register(server, kind="linked_app", name="Owner")
    other = await register(server, kind="linked_app", name="Other")
    token = await mint(server, client_id=owner.client_id)
    assert (await _introspect(base, owner.client_id, owner.secret, token))["active"] is True
    assert await _introspect(base, other.client_id, other.secret, token) == {"active": False}
    assert (await _introspect(base, owner.client_id, owner.secret, token))["active"] is True


async def test_a_bearer_caller_needs_the_introspect_scope(server: Server, base: str) -> None:
    victim = await register(server, kind="linked_app", name="Notes")
    token = await mint(server, client_id=victim.client_id)
    without = await mint(server, client_id="some-app", scopes=("mcp:read",))
    holder = await mint(server, client_id="gateway", token_use="service", scopes=("introspect",))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {without}"},
        )
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
        response = await http.post(
            f"{base}/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {holder}"},
        )
        assert response.status_code == 200
        assert response.json()["active"] is True
