"""End to end, as an operator would: a client made through ClientService gets a token by client
credentials; it validates, plain pyjwt verifies it with GetJwks; revoking it makes it inactive;
the audit log shows every step and verifies (also through `chittyauth audit verify`), and no
secret appears in any log line or audit record."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import jwt
import pytest
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer
from tests.foundation.test_config import run_cli


async def test_client_credentials_validate_revoke_and_audit(
    server: Server,
    channel: aio.Channel,
    admin_token: str,
    token_for: Callable[..., Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clients = client_service_pb2_grpc.ClientServiceStub(channel)
    created = await clients.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                display_name="Billing",
                kind=client_pb2.CLIENT_KIND_SERVICE,
                confidential=True,
                allowed_scopes=["chittyos:services"],
                grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
            )
        ),
        metadata=bearer(admin_token),
    )
    client_id, secret = created.client.client_id, created.client_secret
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    issued = await auth.Exchange(
        auth_service_pb2.ExchangeRequest(
            client_id=client_id,
            client_secret=secret,
            client_credentials=auth_service_pb2.ClientCredentialsGrant(),
        )
    )
    token = issued.access_token
    checked = await auth.Validate(auth_service_pb2.ValidateRequest(token=token))
    assert checked.active
    assert checked.claims.client_id == client_id
    assert list(checked.claims.scopes) == ["chittyos:services"]

    jwks = await auth.GetJwks(auth_service_pb2.GetJwksRequest())
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks.keys if k.kid == kid)
    fields = ("kty", "kid", "use", "alg", "crv", "x", "y", "n", "e")
    key = jwt.PyJWK({f: getattr(jwk, f) for f in fields if getattr(jwk, f)})
    claims = jwt.decode(
        token, key.key, algorithms=[jwk.alg], audience=server.config.tokens.issuer,
        issuer=server.config.tokens.issuer,
    )  # fmt: skip
    assert claims["sub"] == client_id

    await auth.Revoke(auth_service_pb2.RevokeRequest(token=token), metadata=bearer(token))
    after = await auth.Validate(auth_service_pb2.ValidateRequest(token=token))
    assert after.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED

    api_keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
    person = "AB-C-PEO-1234-P-56-H-7"
    owner = await token_for(
        subject=person, chitty_id=person, token_use="portal", scopes=("api_keys:generate",)
    )
    api_key = (
        await api_keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(display_name="k", scopes=["read"]),
            metadata=bearer(owner),
        )
    ).key

    events = await server.store.list_audit_events(AuditQuery(limit=1000))
    actions = [(e.action, e.outcome) for e in events]
    assert ("client.created", "success") in actions
    assert ("token.issued", "success") in actions
    assert ("token.revoked", "success") in actions
    assert (await server.store.verify_audit_log()).valid

    # No secret in any audit record or log line.
    everything = repr(events) + "\n".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    for secret_value in (secret, token, api_key, admin_token, owner):
        assert secret_value not in everything


async def test_cli_audit_verify_names_the_first_bad_record(
    server: Server, token_for: object, tmp_path: Path
) -> None:
    for _ in range(3):
        await token_for()  # type: ignore[operator]
        async with server.store.transaction() as tx:
            from chittyauth.store.protocol import AuditRecord

            await tx.audit(AuditRecord("ops", "x", "test.step", "success"))
    env = {"CHITTYAUTH_STORE__PATH": server.config.store.path}
    code, out, _ = await run_cli("audit", "verify", env=env)
    assert code == 0
    assert out.startswith("audit log intact")
    await server.stop(grace=0.5)

    raw = sqlite3.connect(server.config.store.path)
    raw.execute("DROP TRIGGER audit_events_no_update")
    raw.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    raw.commit()
    raw.close()
    code, out, _ = await run_cli("audit", "verify", env=env)
    assert code == 1
    assert "record 2" in out
