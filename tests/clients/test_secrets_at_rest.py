"""Secrets at rest: the database files hold neither client secrets nor API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    client_service_pb2,
    client_service_pb2_grpc,
)
from chittyauth.config import Config
from chittyauth.domain import ids
from tests.clients.helpers import OWNER, linked_app, running
from tests.clients.helpers import admin_token as mint_admin
from tests.conftest import bearer
from tests.support.fixtures import vouching_authority, with_authority


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    """Keys are made for ChittyIDs only while the authority vouches for them (fail closed)."""
    async with vouching_authority(tmp_path, OWNER) as authority:
        yield with_authority(config, authority)


def database_bytes(config: Config) -> bytes:
    """The database file and its WAL and shared-memory files, as raw bytes."""
    db = Path(config.store.path)
    parts = (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def test_neither_secret_nor_key_is_stored(config: Config) -> None:
    async with running(config) as server, aio.insecure_channel(server.grpc_target) as chan:
        admin = await mint_admin(server)
        clients = client_service_pb2_grpc.ClientServiceStub(chan)
        created = await clients.CreateClient(
            client_service_pb2.CreateClientRequest(client=linked_app(client_id="app")),
            metadata=bearer(admin),
        )
        rotated = await clients.RotateClientSecret(
            client_service_pb2.RotateClientSecretRequest(client_id="app"), metadata=bearer(admin)
        )
        keys = api_key_service_pb2_grpc.ApiKeyServiceStub(chan)
        api_key = await keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(chitty_id=OWNER), metadata=bearer(admin)
        )
        # Read while running (WAL not yet checkpointed) and again after a clean stop.
        during = database_bytes(config)
    after = database_bytes(config)

    secrets = [created.client_secret, rotated.client_secret, api_key.key]
    for blob in (during, after):
        for secret in secrets:
            assert secret.encode() not in blob
            # Not even the random part without its prefix.
            assert secret[8:].encode() not in blob
    # What is stored is the hash, which is how we know we were looking at the right files.
    assert ids.secret_hash(rotated.client_secret).encode() in after
    assert ids.secret_hash(api_key.key).encode() in after
