"""The agent's portal, permission and session tools, against the dev authority and Access."""

from __future__ import annotations

from pathlib import Path

import pytest

from chittyauth.config import (
    AuthorityConfig,
    Config,
    GrpcConfig,
    HttpConfig,
    PortalConfig,
    StoreConfig,
    replace,
)
from tests.mcp.test_agent import Opener, call, open_agent, refused
from tests.support.devauthority import DevAuthority

__all__ = ["open_agent"]


@pytest.fixture
def config(tmp_path: Path, dev_authority: DevAuthority) -> Config:
    """The shared server fixture, pointed at the dev authority and its Access issuer."""
    return replace(
        Config(),
        grpc=GrpcConfig(port=0, grace_period_s=2.0),
        http=HttpConfig(port=0),
        store=StoreConfig(path=str(tmp_path / "chittyauth.db")),
        authority=AuthorityConfig(url=dev_authority.authority_url),
        portal=PortalConfig(team_domain=dev_authority.base_url, audiences=("chittyauth-dev",)),
    )


async def test_portal_login_grants_and_sessions(
    open_agent: Opener, dev_authority: DevAuthority
) -> None:
    alice_jwt = await dev_authority.mint_assertion("alice@example.com")
    bob_jwt = await dev_authority.mint_assertion("bob@example.com")
    async with open_agent() as session:
        ok, alice = await call(
            session,
            "mcp_portal_authenticate",
            cf_access_jwt=alice_jwt,
            cf_access_email="alice@example.com",
        )
        assert not ok, alice
        assert alice["authenticated"]
        assert alice["chitty_id"]
        assert alice["mcp_portal_url"]
        _, bob = await call(session, "mcp_portal_authenticate", cf_access_jwt=bob_jwt)
        _, verdict = await call(
            session, "validate_mcp_token", token=alice["portal_token"], token_type="portal"
        )
        assert verdict["valid"]
        assert verdict["chitty_id"] == alice["chitty_id"]
        error = refused(
            await call(
                session,
                "mcp_portal_authenticate",
                cf_access_jwt=alice_jwt,
                cf_access_email="mallory@example.com",
            )
        )
        assert error["code"] == "UNAUTHENTICATED"

        ok, sessions = await call(session, "list_sessions", chitty_id=alice["chitty_id"])
        assert not ok, sessions
        assert [s["session_id"] for s in sessions["sessions"]] == [alice["session_id"]]

        ok, grant = await call(
            session,
            "grant_authorization",
            grantor_chitty_id=alice["chitty_id"],
            grantee_chitty_id=bob["chitty_id"],
            permission="documents:read",
            resource="doc-1",
        )
        assert not ok, grant
        assert grant["authorization_id"]
        assert grant["grantee_chitty_id"] == bob["chitty_id"]
        _, check = await call(
            session,
            "check_permission",
            chitty_id=bob["chitty_id"],
            permission="documents:read",
            resource="doc-1",
        )
        assert check["authorized"] is True
        assert check["grant_id"] == grant["authorization_id"]
        _, check = await call(
            session, "check_permission", chitty_id=bob["chitty_id"], permission="documents:write"
        )
        assert check["authorized"] is False


async def test_generate_jwt_issues_for_a_chitty_id(
    open_agent: Opener, dev_authority: DevAuthority
) -> None:
    minted = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    chitty_id = minted["chittyId"]
    async with open_agent() as session:
        ok, jwt = await call(
            session,
            "generate_jwt",
            chitty_id=chitty_id,
            expires_in="30m",
            claims={"team": "blue"},
        )
        assert not ok, jwt
        assert jwt["type"] == "Bearer"
        assert jwt["chitty_id"] == chitty_id
        assert 0 < jwt["expires_in"] <= 1800
        _, verdict = await call(session, "validate_jwt", token=jwt["token"])
        assert verdict["valid"], verdict
        assert verdict["chitty_id"] == chitty_id
        assert verdict["claims"]["sub"] == chitty_id
        assert verdict["claims"]["token_use"] == "TOKEN_USE_USER"
        assert verdict["claims"]["extra_claims"] == {"team": "blue"}

        error = refused(
            await call(session, "generate_jwt", chitty_id=chitty_id, expires_in="999d"),
            "INVALID_ARGUMENT",
        )
        assert error["reason"] == "INVALID_TTL"
        error = refused(await call(session, "generate_jwt", chitty_id="not a chitty id"))
        assert error["reason"] == "INVALID_CHITTY_ID"
