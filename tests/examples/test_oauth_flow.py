"""examples/oauth_flow.py against a real server and dev authority, then the audit chain."""

from __future__ import annotations

import sqlite3

from chittyauth.app import Server
from chittyauth.clients_file import secrets_dir_for
from tests.examples.conftest import REFRESH_GRACE_S, audit_verify, run_python, target_flags
from tests.support.devauthority import DevAuthority


async def test_oauth_flow_example(server: Server, dev_authority: DevAuthority) -> None:
    secret_file = secrets_dir_for(server.config.store.path) / "chittyauth-admin.secret"
    ran = await run_python(
        "examples/oauth_flow.py",
        *target_flags(server, dev_authority),
        "--admin-secret-file",
        str(secret_file),
        "--refresh-grace",
        str(REFRESH_GRACE_S),
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    for prefix in (
        "[1] Access assertion: minted for ",
        "[2] portal login: chitty_id=",
        "[3] linked app: client_id=",
        "[4] authorize (PKCE S256): code issued",
        "[5] code exchange: scope='mcp:read cross_sync'",
        "[6] validate: active",
        "[7] refresh: both tokens rotated",
        "[8] replay after grace: refused (invalid_grant); family revoked",
    ):
        assert any(line.startswith(prefix) for line in lines), (prefix, ran.stdout)
    assert lines[-1] == "oauth flow complete"
    # No secret reaches the output: the admin secret is never printed.
    assert secret_file.read_text().strip() not in ran.stdout + ran.stderr

    # The replay was recorded, and the audit chain the flow extended still verifies.
    conn = sqlite3.connect(server.config.store.path)
    try:
        replays = conn.execute(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'oauth.refresh_replayed'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert replays == 1
    verified = await audit_verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit log intact" in verified.stdout


async def test_oauth_flow_example_fails_loudly(server: Server, dev_authority: DevAuthority) -> None:
    # A wrong admin secret is an unexpected answer: exit 1 with FAILED, no traceback.
    ran = await run_python(
        "examples/oauth_flow.py",
        *target_flags(server, dev_authority),
        "--client-id",
        "no-such-client",
        "--client-secret",
        "wrong",
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "FAILED:" in ran.stderr
    assert "Traceback" not in ran.stderr
