"""examples/two_devices.py against a real server and dev authority, then the audit chain."""

from __future__ import annotations

from chittyauth.app import Server
from tests.examples.conftest import audit_verify, run_python, target_flags
from tests.support.devauthority import DevAuthority


async def test_two_devices_example(server: Server, dev_authority: DevAuthority) -> None:
    flags = target_flags(server, dev_authority)
    # two_devices speaks gRPC only: drop the --http flag and its value.
    at = flags.index("--http")
    del flags[at : at + 2]
    ran = await run_python("examples/two_devices.py", *flags)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    for prefix in (
        "[1] two portal logins: chitty_id=",
        "[2] both devices watch",
        "[3] laptop writes state: chittymcp version ",
        "[4] phone sees STATE_CHANGED: version ",
        "[5] stale write refused: ABORTED VERSION_CONFLICT, current_version=",
        "[6] RevokeSession: laptop token REVOKED, phone token REVOKED",
    ):
        assert any(line.startswith(prefix) for line in lines), (prefix, ran.stdout)
    assert lines[-1] == "two devices complete"
    verified = await audit_verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr
