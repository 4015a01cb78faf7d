"""Recording a person's consent for a client, as approving it through /authorize records it.

Naming a ChittyID grants nothing: an MCP server acts for a person, and a ``tokens:issue``
client issues for one, only after that person consented to the client. Tests whose subject is
not the consent itself record it directly with ``record_consent``; ``consent_through_authorize``
goes through the real flow (the person's own token approving an authorization request).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence

from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store import oauth as oauth_rows


async def record_consent(
    server: Server, chitty_id: str, client_id: str, scopes: Sequence[str] = ()
) -> None:
    """Stores ``chitty_id``'s consent to ``client_id`` for ``scopes`` (merged with any earlier)."""
    async with server.store.transaction() as tx:
        await oauth_rows.record_consent(tx, chitty_id, client_id, tuple(scopes))


def pkce_challenge() -> str:
    """A fresh S256 code challenge (the verifier is not needed to record a consent)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def consent_through_authorize(
    channel: aio.Channel,
    person_token: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
) -> auth_service_pb2.AuthorizeResponse:
    """The person (their own token) approves ``client_id`` for ``scopes`` with Authorize."""
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Authorize(
        auth_service_pb2.AuthorizeRequest(
            response_type="code",
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=list(scopes),
            state="consent",
            code_challenge=pkce_challenge(),
            code_challenge_method="S256",
        ),
        metadata=(("authorization", f"Bearer {person_token}"),),
    )
