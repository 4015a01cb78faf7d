"""Runs every ```python block of docs/client.md, in order, against a real server."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

from grpc import aio

from chittyauth.app import Server
from tests.client.conftest import create_service_client
from tests.client.test_verifier import RESOURCE

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def code_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


async def test_docs_examples_run(server: Server, channel: aio.Channel, admin_token: str) -> None:
    creds = await create_service_client(channel, admin_token, "docs-svc", ("introspect",))
    namespace: dict[str, Any] = {
        "asyncio": asyncio,
        "TARGET": server.grpc_target,
        "ISSUER": server.config.tokens.issuer,
        "ADMIN_TOKEN": admin_token,
        "CLIENT_ID": creds.client_id,
        "CLIENT_SECRET": creds.client_secret,
        "RESOURCE": RESOURCE,
    }
    blocks = code_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        # Each block runs as the body of a coroutine sharing one namespace.
        source = "async def __example():\n" + textwrap.indent(block, "    ")
        source += "\n    globals().update({k: v for k, v in locals().items()})\n"
        exec(compile(source, str(DOC), "exec"), namespace)
        await namespace["__example"]()
