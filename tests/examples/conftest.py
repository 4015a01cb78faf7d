"""A server as `make run` starts it — dev authority, dev clients file — on ephemeral ports.

The examples run as subprocesses against it (ports passed as flags), so the server runs in
this test's event loop and the examples must be awaited, never run blocking.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from chittyauth.app import Server
from chittyauth.config import Config, replace
from tests.support.devauthority import DevAuthority

ROOT = Path(__file__).resolve().parents[2]
# Step 8 of oauth_flow waits out the refresh grace window; keep it short here.
REFRESH_GRACE_S = 1


@dataclass(frozen=True)
class Ran:
    """An example's exit status and output."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def config(config: Config, dev_authority: DevAuthority) -> Config:
    return replace(
        config,
        clients_file=str(ROOT / "config" / "dev-clients.toml"),
        authority=dataclasses.replace(config.authority, url=dev_authority.authority_url),
        portal=dataclasses.replace(
            config.portal, team_domain=dev_authority.base_url, audiences=("chittyauth-dev",)
        ),
        tokens=dataclasses.replace(config.tokens, refresh_grace_s=REFRESH_GRACE_S),
    )


def target_flags(server: Server, authority: DevAuthority) -> list[str]:
    """The flags that point an example at this server and authority."""
    return [
        "--grpc",
        server.grpc_target,
        "--http",
        f"127.0.0.1:{server.http_port}",
        "--authority",
        authority.base_url,
    ]


async def run_python(*args: str, timeout_s: float = 60.0) -> Ran:
    """Runs ``python ARGS`` from the repository root without blocking the event loop."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def audit_verify(server: Server) -> Ran:
    """``chittyauth audit verify`` on the server's database file."""
    env_path = server.config.store.path
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chittyauth.cli",
        "audit",
        "verify",
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "CHITTYAUTH_STORE__PATH": env_path,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())
