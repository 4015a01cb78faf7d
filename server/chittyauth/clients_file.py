"""The declarative clients file (TOML), applied idempotently at every start.

Each ``[[clients]]`` entry declares one client. At start the file is applied: a missing client
is created, a field the entry names is brought to the entry's value, and nothing else happens —
no client is ever deleted and no existing secret is ever rotated. Applying the same file twice
changes nothing the second time (no rows, no change-log entries, no audit records).

A confidential client's secret, at creation only, comes from the environment variable named by
``secret_env`` (which must then be set; the service stores the SHA-256 only), or, when the entry
has no ``secret_env``, is generated and written once to ``client-secrets/<client_id>.secret``
beside the database, readable by the owner only (0600). See docs/clients.md.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from chittyauth.domain.clients import (
    GRANT_TOKEN_EXCHANGE,
    ClientAdmin,
    ClientRegistry,
    ClientSpec,
    check_client_id,
)
from chittyauth.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidClient,
)

log = logging.getLogger(__name__)

ACTOR = "system:clients-file"
SECRETS_DIR_NAME = "client-secrets"
# Short names accepted in the file for the RFC grant_type values.
GRANT_ALIASES = {"token_exchange": GRANT_TOKEN_EXCHANGE}
MAX_ENTRIES = 1000

_SPEC_FIELDS = {f.name for f in fields(ClientSpec)}
_LIST_FIELDS = {
    "redirect_uris", "allowed_scopes", "grant_types", "capabilities", "exchange_audiences",
}  # fmt: skip
_BOOL_FIELDS = {"confidential", "exchange_may_impersonate"}
_KEYS = _SPEC_FIELDS | {"client_id", "secret_env"}


class ClientsFileError(FailedPrecondition):
    """The clients file cannot be read or applied; the message names the entry and key."""

    reason = "INVALID_CLIENTS_FILE"


@dataclass(frozen=True, slots=True)
class FileClient:
    """One entry of the clients file."""

    client_id: str
    # The fields the entry names, exactly as given (grant aliases resolved).
    declared: Mapping[str, Any]
    secret_env: str = ""

    def spec(self) -> ClientSpec:
        """The spec for a new client: declared fields, defaults for the rest."""
        return ClientSpec(**{"display_name": "", "kind": "", **self.declared})


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying the file did (client ids)."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def secrets_dir_for(database_path: str) -> Path:
    """Where generated secrets of file clients are written: beside the database."""
    return Path(database_path).parent / SECRETS_DIR_NAME


def load_clients_file(path: str | os.PathLike[str]) -> list[FileClient]:
    """Parses and checks the file's shape (values are checked when applied).

    Raises:
        ClientsFileError: unreadable, not TOML, an unknown key, or a value of the wrong type.
    """
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ClientsFileError(f"clients file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientsFileError(f"clients file {path} cannot be read: {exc}") from exc
    unknown = set(document) - {"clients"}
    if unknown:
        raise ClientsFileError(f"clients file {path}: unknown key {sorted(unknown)[0]!r}")
    entries = document.get("clients", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ClientsFileError(f"clients file {path}: 'clients' must be an array of tables")
    if len(entries) > MAX_ENTRIES:
        raise ClientsFileError(f"clients file {path}: at most {MAX_ENTRIES} clients")
    parsed = [_entry(path, index, entry) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for client in parsed:
        if client.client_id in seen:
            raise ClientsFileError(f"clients file {path}: client {client.client_id} is repeated")
        seen.add(client.client_id)
    return parsed


def _entry(path: str | os.PathLike[str], index: int, entry: Mapping[str, Any]) -> FileClient:
    where = f"clients file {path}, clients[{index}]"
    for key in entry:
        if key not in _KEYS:
            raise ClientsFileError(f"{where}: unknown key {key!r}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise ClientsFileError(f"{where}: client_id is required")
    try:
        check_client_id(client_id)
    except DomainError as exc:
        raise ClientsFileError(f"{where}: {exc.message}") from exc
    where = f"clients file {path}, client {client_id}"
    declared: dict[str, Any] = {}
    for key, value in entry.items():
        if key in ("client_id", "secret_env"):
            continue
        if key in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ClientsFileError(f"{where}: {key} must be true or false")
        elif key in _LIST_FIELDS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ClientsFileError(f"{where}: {key} must be a list of strings")
            if key == "grant_types":
                value = [GRANT_ALIASES.get(v, v) for v in value]
            value = tuple(value)
        elif not isinstance(value, str):
            raise ClientsFileError(f"{where}: {key} must be a string")
        declared[key] = value
    for required in ("display_name", "kind"):
        if required not in declared:
            raise ClientsFileError(f"{where}: {required} is required")
    secret_env = entry.get("secret_env", "")
    if not isinstance(secret_env, str):
        raise ClientsFileError(f"{where}: secret_env must be a string")
    if secret_env and declared.get("confidential", True) is False:
        raise ClientsFileError(f"{where}: a public client has no secret; remove secret_env")
    return FileClient(client_id, declared, secret_env)


async def apply_clients_file(
    path: str | os.PathLike[str],
    admin: ClientAdmin,
    registry: ClientRegistry,
    *,
    secrets_dir: Path,
    env: Mapping[str, str] | None = None,
) -> ApplyResult:
    """Creates missing clients and updates declared fields; never deletes or rotates.

    Args:
        path: the TOML file.
        admin: creates and updates, with audit records under the actor ``system:clients-file``.
        registry: the loaded registry, to see what exists already.
        secrets_dir: where generated secrets are written (0600), one file per client.
        env: the environment ``secret_env`` names are looked up in (default: os.environ).

    Raises:
        ClientsFileError: a bad file or entry, a ``secret_env`` variable that is unset when its
            client must be created, or a change the file cannot make (kind, confidential).
    """
    environment = os.environ if env is None else env
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    skipped: list[str] = []
    for entry in load_clients_file(path):
        where = f"clients file {path}, client {entry.client_id}"
        existing = registry.get(entry.client_id)
        try:
            if existing is None:
                if await _create(entry, admin, secrets_dir, environment, where):
                    created.append(entry.client_id)
                else:
                    skipped.append(entry.client_id)
                continue
            _warn_if_secret_differs(entry, registry, environment)
            wanted = replace(ClientSpec.of(existing), **entry.declared)
            if wanted.kind != existing.kind or wanted.confidential != existing.confidential:
                raise ClientsFileError(
                    f"{where}: kind and confidential of an existing client cannot change;"
                    " delete the client first or give the entry a new client_id"
                )
            after = await admin.update_trusted(ACTOR, entry.client_id, wanted)
            if after is None or after == existing:
                unchanged.append(entry.client_id)
            else:
                updated.append(entry.client_id)
        except ClientsFileError:
            raise
        except DomainError as exc:
            raise ClientsFileError(f"{where}: {exc.message}") from exc
    result = ApplyResult(tuple(created), tuple(updated), tuple(unchanged), tuple(skipped))
    log.info(
        "clients file applied",
        extra={
            "path": str(path),
            "clients_created": len(created),
            "clients_updated": len(updated),
            "clients_unchanged": len(unchanged),
            "clients_skipped": len(skipped),
        },
    )
    return result


async def _create(
    entry: FileClient,
    admin: ClientAdmin,
    secrets_dir: Path,
    environment: Mapping[str, str],
    where: str,
) -> bool:
    secret: str | None = None
    if entry.secret_env:
        secret = environment.get(entry.secret_env, "")
        if not secret:
            raise ClientsFileError(
                f"{where}: the environment variable {entry.secret_env} (secret_env) is not set"
            )
    try:
        issued = await admin.create_trusted(
            ACTOR,
            entry.spec(),
            client_id=entry.client_id,
            source="file",
            secret=secret,
            keep_secret=None if secret is not None else _writer(secrets_dir),
        )
    except AlreadyExists:
        # Another replica created it a moment ago from the same file: nothing left to do.
        log.info("clients file entry created elsewhere", extra={"client_id": entry.client_id})
        return False
    except FailedPrecondition as exc:
        if exc.reason != "CLIENT_ID_RECENTLY_DELETED":
            raise
        # Recreating it now would make its new tokens look revoked; try again at a later start.
        log.warning(
            "clients file entry skipped", extra={"client_id": entry.client_id, "why": exc.message}
        )
        return False
    if issued.secret and secret is None:
        log.info(
            "client secret written",
            extra={
                "client_id": entry.client_id,
                "path": str(secret_path(secrets_dir, entry.client_id)),
            },
        )
    return True


def secret_path(secrets_dir: Path, client_id: str) -> Path:
    """The file a generated secret of a file client is written to."""
    return secrets_dir / f"{client_id}.secret"


def _writer(secrets_dir: Path) -> Callable[[str, str], None]:
    def keep(client_id: str, secret: str) -> None:
        # Runs inside the creating transaction: if the write fails, the client is not created.
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = secret_path(secrets_dir, client_id)
        temporary = target.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to an existing file
        os.replace(temporary, target)

    return keep


def _warn_if_secret_differs(
    entry: FileClient, registry: ClientRegistry, environment: Mapping[str, str]
) -> None:
    value = environment.get(entry.secret_env, "") if entry.secret_env else ""
    if not value:
        return
    try:
        registry.authenticate(entry.client_id, value)
    except InvalidClient:
        log.warning(
            "secret_env differs from the stored client secret; not rotated"
            " (use RotateClientSecret)",
            extra={"client_id": entry.client_id, "secret_env": entry.secret_env},
        )
