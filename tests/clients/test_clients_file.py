"""The declarative clients file: applied at start, idempotent, never deletes or rotates."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from google.protobuf import field_mask_pb2
from grpc import aio

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.config import Config, replace
from chittyauth.domain import policy
from chittyauth.domain.errors import DomainError
from tests.clients.helpers import admin_token, audit_events, running, sql_all
from tests.conftest import bearer

REPO = Path(__file__).resolve().parents[2]
DEV_CLIENTS = REPO / "config" / "dev-clients.toml"
MCP_SCOPES = ("mcp:read", "mcp:write", "chittyos:services", "cross_sync")
SECRET = "s3cr3t-from-the-environment-0123456789abcdef"


def with_file(config: Config, path: Path) -> Config:
    return replace(config, clients_file=str(path))


def secrets_dir(config: Config) -> Path:
    return Path(config.store.path).parent / "client-secrets"


def counts(config: Config) -> tuple[int, int, int]:
    db = config.store.path
    return (
        sql_all(db, "SELECT COUNT(*) FROM oauth_clients")[0][0],
        sql_all(db, "SELECT COUNT(*) FROM audit_events")[0][0],
        sql_all(db, "SELECT COUNT(*) FROM changes")[0][0],
    )


async def test_dev_clients_file_bootstraps_the_platform(config: Config) -> None:
    config = with_file(config, DEV_CLIENTS)
    async with running(config) as server:
        for name in ("chittymcp", "chittychat", "chittyrouter"):
            record = server.clients.get(name)
            assert record is not None
            assert record.kind == "mcp_server"
            assert record.server_id == name
            assert record.allowed_scopes == MCP_SCOPES
            assert record.source == "file"
        admin = server.clients.get("chittyauth-admin")
        assert admin is not None
        assert admin.allowed_scopes == ("chittyauth:admin",)
        assert admin.grant_types == ("client_credentials",)

        secret_file = secrets_dir(config) / "chittyauth-admin.secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(secrets_dir(config).stat().st_mode) == 0o700
        secret = secret_file.read_text().strip()
        assert server.clients.authenticate("chittyauth-admin", secret) is admin
        # The first admin: a client_credentials token that carries chittyauth:admin.
        issued = await server.grants.client_credentials(
            "chittyauth-admin", secret, [], [], request_id="test"
        )
        assert issued.scopes == ("chittyauth:admin",)
        assert policy.is_admin(server.tokens.principal_for(issued.token))
        events = await audit_events(server, "client.created")
        assert {e.actor for e in events} == {"system:clients-file"}
        assert all(secret not in repr(e) for e in events)


async def test_applying_twice_changes_nothing(config: Config) -> None:
    config = with_file(config, DEV_CLIENTS)
    async with running(config):
        pass
    first = counts(config)
    secret_files = {p.name: p.read_text() for p in secrets_dir(config).iterdir()}
    hashes = sql_all(config.store.path, "SELECT client_id, secret_hash FROM oauth_clients")
    async with running(config) as server:
        assert len(server.clients) == 4
    assert counts(config) == first
    assert {p.name: p.read_text() for p in secrets_dir(config).iterdir()} == secret_files
    assert sql_all(config.store.path, "SELECT client_id, secret_hash FROM oauth_clients") == hashes


async def test_changed_fields_are_updated_and_nothing_is_deleted(
    config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(
        '[[clients]]\nclient_id = "svc"\ndisplay_name = "Service"\nkind = "service"\n'
        'allowed_scopes = ["a"]\n'
        '[[clients]]\nclient_id = "other"\ndisplay_name = "Other"\nkind = "service"\n'
    )
    config = with_file(config, path)
    async with running(config) as server:
        before = server.clients.get("svc")
    assert before is not None
    # Drop one entry, change one field of the other, leave the rest to defaults.
    path.write_text(
        '[[clients]]\nclient_id = "svc"\ndisplay_name = "Renamed"\nkind = "service"\n'
        'allowed_scopes = ["a"]\n'
    )
    async with running(config) as server:
        after = server.clients.get("svc")
        assert after is not None
        assert after.display_name == "Renamed"
        assert after.secret_hash == before.secret_hash  # never rotated
        assert server.clients.get("other") is not None  # never deleted
        [update] = await audit_events(server, "client.updated")
        assert update.attributes["fields"] == "display_name"
        assert update.actor == "system:clients-file"


async def test_fields_the_entry_omits_are_left_as_changed_elsewhere(
    config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n')
    config = with_file(config, path)
    async with running(config) as server, aio.insecure_channel(server.grpc_target) as chan:
        stub = client_service_pb2_grpc.ClientServiceStub(chan)
        await stub.UpdateClient(
            client_service_pb2.UpdateClientRequest(
                client=client_pb2.Client(client_id="svc", allowed_scopes=["added"]),
                update_mask=field_mask_pb2.FieldMask(paths=["allowed_scopes"]),
            ),
            metadata=bearer(await admin_token(server)),
        )
    async with running(config) as server:
        again = server.clients.get("svc")
        assert again is not None
        assert again.allowed_scopes == ("added",)
        assert again.display_name == "S"


async def test_secret_env_supplies_the_secret(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(
        '[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n'
        'secret_env = "TEST_SVC_SECRET"\n'
    )
    monkeypatch.setenv("TEST_SVC_SECRET", SECRET)
    config = with_file(config, path)
    async with running(config) as server:
        assert server.clients.authenticate("svc", SECRET).client_id == "svc"
    assert not (secrets_dir(config) / "svc.secret").exists()
    # A different value later never rotates the stored secret.
    monkeypatch.setenv("TEST_SVC_SECRET", SECRET + "-changed")
    async with running(config) as server:
        assert server.clients.authenticate("svc", SECRET).client_id == "svc"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n'
         'secret_env = "TEST_UNSET_SECRET_VAR"\n', "TEST_UNSET_SECRET_VAR"),
        ('[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\nbogus = 1\n',
         "unknown key 'bogus'"),
        ('[[clients]]\ndisplay_name = "S"\nkind = "service"\n', "client_id is required"),
        ('[[clients]]\nclient_id = "svc"\nkind = "service"\n', "display_name is required"),
        ('[[clients]]\nclient_id = "a"\ndisplay_name = "A"\nkind = "linked_app"\n'
         'redirect_uris = ["http://app.example/cb"]\n', "loopback"),
        ('[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n'
         'allowed_scopes = "not-a-list"\n', "list of strings"),
        ("not toml [", "cannot be read"),
        ('[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n'
         '[[clients]]\nclient_id = "svc"\ndisplay_name = "S"\nkind = "service"\n', "repeated"),
    ],
)  # fmt: skip
async def test_a_bad_file_stops_start(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    message: str,
) -> None:
    monkeypatch.delenv("TEST_UNSET_SECRET_VAR", raising=False)
    path = tmp_path / "clients.toml"
    path.write_text(body)
    with pytest.raises(DomainError, match=message) as caught:
        async with running(with_file(config, path)):
            pass
    assert caught.value.reason == "INVALID_CLIENTS_FILE"
    assert sql_all(config.store.path, "SELECT COUNT(*) FROM oauth_clients") == [(0,)]


async def test_kind_cannot_change_through_the_file(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "x"\ndisplay_name = "X"\nkind = "service"\n')
    config = with_file(config, path)
    async with running(config):
        pass
    path.write_text('[[clients]]\nclient_id = "x"\ndisplay_name = "X"\nkind = "mcp_server"\n')
    with pytest.raises(DomainError, match="cannot change"):
        async with running(config):
            pass
