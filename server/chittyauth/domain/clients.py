"""OAuth clients: the registration rules, the in-memory registry, and admin CRUD.

A client is a linked app (authorization code), an MCP server of the platform, or a machine
client (client credentials). A confidential client holds a secret, shown once and stored as its
SHA-256; a public client holds none and must use PKCE. The registry is what the token endpoint
consults on the hot path: loaded at start, updated the moment a local change commits, and kept
current from the change log (kinds ``client.*``) for changes made elsewhere.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from chittyauth.domain import ids, policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    NotFound,
)
from chittyauth.domain.paging import decode_page_token, encode_page_token, page_size
from chittyauth.domain.principal import Principal
from chittyauth.domain.revocation import RevocationSets
from chittyauth.store import clients as rows
from chittyauth.store.clients import ClientRow
from chittyauth.store.protocol import AuditRecord, Change
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

T = TypeVar("T")

ClientRecord = ClientRow

KINDS = ("linked_app", "mcp_server", "service")
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
)
# Grants that authenticate the client itself; a public client has nothing to authenticate with.
CONFIDENTIAL_ONLY_GRANTS = frozenset({GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE})
AUTH_BASIC = "client_secret_basic"
AUTH_POST = "client_secret_post"
AUTH_NONE = "none"
AUTH_METHODS = (AUTH_BASIC, AUTH_POST, AUTH_NONE)

CLIENT_ADMIN_SCOPES = ("chittyauth:admin", "clients:admin")
SECRET_PREFIX = "cs_"
SECRET_HINT_LENGTH = 8
# Operator-supplied secrets (clients file, secret_env) must be at least this long.
MIN_SECRET_LENGTH = 32
MAX_SECRET_LENGTH = 512

MAX_CLIENT_ID_LENGTH = 128
MAX_DISPLAY_NAME_LENGTH = 200
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 128
MAX_CAPABILITIES = 50
MAX_EXCHANGE_AUDIENCES = 20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~-]*")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

# Paths UpdateClient may name (proto field names), and those it may not.
UPDATABLE_FIELDS = frozenset(
    {
        "display_name",
        "redirect_uris",
        "allowed_scopes",
        "grant_types",
        "token_endpoint_auth_method",
        "server_id",
        "capabilities",
        "metadata_document_uri",
        "exchange_audiences",
        "exchange_may_impersonate",
    }
)
IMMUTABLE_FIELDS = frozenset(
    {"client_id", "kind", "confidential", "secret_hint", "create_time", "update_time"}
)

# What an unknown client id is compared against, so an unknown id costs the same as a known one.
_UNKNOWN_CLIENT_HASH = ids.secret_hash("cs_no-such-client-placeholder")
# How long past a deleted client's revocation its id stays reserved (beyond token lifetimes).
_DELETION_MARGIN_S = 3600


class TokenRevoker(Protocol):
    """What client and API key administration needs of the token service."""

    async def revoke(self, tx: SqliteTransaction, kind: str, value: str, until: float) -> bool:
        """Records a revocation in ``tx`` (kinds of ``RevocationSets``)."""
        ...

    def max_lifetime(self) -> int:
        """The longest any access token lives, in seconds."""
        ...

    @property
    def revocations(self) -> RevocationSets:
        """The in-memory revocation sets."""
        ...


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """The settable fields of a client; empty values take the documented defaults."""

    display_name: str
    kind: str
    confidential: bool = True
    redirect_uris: tuple[str, ...] = ()
    allowed_scopes: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    token_endpoint_auth_method: str = ""
    server_id: str = ""
    capabilities: tuple[str, ...] = ()
    metadata_document_uri: str = ""
    # Token exchange policy: the audiences / resource indicators the client may request (exact
    # strings), and whether it may impersonate rather than only delegate.
    exchange_audiences: tuple[str, ...] = ()
    exchange_may_impersonate: bool = False

    @classmethod
    def of(cls, record: ClientRecord) -> ClientSpec:
        """The spec a stored client was made from (after defaults)."""
        return cls(
            display_name=record.display_name,
            kind=record.kind,
            confidential=record.confidential,
            redirect_uris=record.redirect_uris,
            allowed_scopes=record.allowed_scopes,
            grant_types=record.grant_types,
            token_endpoint_auth_method=record.token_endpoint_auth_method,
            server_id=record.server_id,
            capabilities=record.capabilities,
            metadata_document_uri=record.metadata_document_uri,
            exchange_audiences=record.exchange_audiences,
            exchange_may_impersonate=record.exchange_may_impersonate,
        )


@dataclass(frozen=True, slots=True)
class IssuedClient:
    """A client and, when one was just made, its secret (shown once; '' otherwise)."""

    client: ClientRecord
    secret: str = dataclasses.field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class ClientPage:
    """One page of ListClients."""

    clients: tuple[ClientRecord, ...]
    next_page_token: str


# -- validation ---------------------------------------------------------------------------


def _bad(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, reason="INVALID_CLIENT_METADATA", metadata={"field": field})


def check_client_id(client_id: str) -> str:
    """Returns ``client_id`` if it is a usable id (letters, digits, ``._:~-``, at most 128).

    Raises:
        InvalidRequest: reason ``INVALID_CLIENT_ID``.
    """
    if len(client_id) > MAX_CLIENT_ID_LENGTH or not _CLIENT_ID.fullmatch(client_id):
        raise InvalidRequest(
            f"client_id must be 1 to {MAX_CLIENT_ID_LENGTH} letters, digits or ._:~-"
            " starting with a letter or digit",
            reason="INVALID_CLIENT_ID",
        )
    return client_id


def check_redirect_uri(uri: str, index: int = 0) -> str:
    """An exact redirect URI: absolute, https (or http on a loopback host), no fragment.

    Raises:
        InvalidRequest: reason ``INVALID_REDIRECT_URI``, with the offending index.
    """

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(
            f"redirect_uris[{index}] {why}",
            reason="INVALID_REDIRECT_URI",
            metadata={"index": str(index)},
        )

    if not uri or len(uri) > MAX_URI_LENGTH:
        raise refuse(f"must be 1 to {MAX_URI_LENGTH} characters")
    if not all(0x21 <= ord(char) <= 0x7E for char in uri):
        raise refuse("must be printable ASCII without spaces")
    if "#" in uri:
        raise refuse("must not contain a fragment")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise refuse("is not a valid URI") from exc
    if not parts.scheme or not parts.netloc or not host:
        raise refuse("must be an absolute URI with a host")
    if parts.username is not None or parts.password is not None:
        raise refuse("must not contain user information")
    scheme = parts.scheme.lower()
    if scheme == "https":
        return uri
    if scheme == "http":
        if host in LOOPBACK_HOSTS:
            return uri
        raise refuse("may use http only on a loopback host (127.0.0.1, [::1], localhost)")
    raise refuse("must use https (or http on a loopback host)")


def check_scope_token(scope: str, field: str) -> str:
    """A scope token per RFC 6749 §3.3 (printable ASCII, no space, quote or backslash)."""
    if len(scope) > MAX_SCOPE_LENGTH or not _SCOPE_TOKEN.fullmatch(scope):
        raise _bad(
            f"{field} must hold RFC 6749 scope tokens of at most {MAX_SCOPE_LENGTH} characters",
            field,
        )
    return scope


def _checked_tokens(values: Iterable[str], field: str, limit: int) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(values))
    if len(unique) > limit:
        raise _bad(f"{field} may hold at most {limit} entries", field)
    for value in unique:
        check_scope_token(value, field)
    return unique


def _check_metadata_uri(uri: str) -> str:
    if not uri:
        return uri
    parts = urlsplit(uri) if len(uri) <= MAX_URI_LENGTH else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.netloc
        or "#" in uri
        or not all(0x21 <= ord(char) <= 0x7E for char in uri)
    ):
        raise _bad(
            "metadata_document_uri must be an https URI without a fragment",
            "metadata_document_uri",
        )
    return uri


def normalized(spec: ClientSpec, client_id: str) -> ClientSpec:
    """Checks every field and applies the defaults; the result is what gets stored.

    Defaults: grant types by kind (linked_app and public clients: authorization_code +
    refresh_token; confidential mcp_server: client_credentials + token exchange; service:
    client_credentials), token_endpoint_auth_method client_secret_basic for confidential and
    none for public clients, server_id = client_id for an MCP server, and an exchange
    policy that allows no audience and delegation only.

    Raises:
        InvalidRequest: reason ``INVALID_CLIENT_METADATA`` (naming the field) or
            ``INVALID_REDIRECT_URI``.
    """
    name = spec.display_name
    if not name or len(name) > MAX_DISPLAY_NAME_LENGTH or not name.isprintable():
        raise _bad(
            f"display_name must be 1 to {MAX_DISPLAY_NAME_LENGTH} printable characters",
            "display_name",
        )
    if spec.kind not in KINDS:
        raise _bad(f"kind must be one of {', '.join(KINDS)}", "kind")
    if spec.kind == "service" and not spec.confidential:
        raise _bad("a service client must be confidential", "confidential")
    if len(spec.redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRequest(
            f"at most {MAX_REDIRECT_URIS} redirect URIs", reason="INVALID_REDIRECT_URI"
        )
    redirect_uris = tuple(
        dict.fromkeys(check_redirect_uri(uri, i) for i, uri in enumerate(spec.redirect_uris))
    )
    grant_types = _checked_grants(spec)
    if GRANT_AUTHORIZATION_CODE in grant_types and not redirect_uris:
        raise InvalidRequest(
            "the authorization_code grant needs at least one redirect URI",
            reason="INVALID_REDIRECT_URI",
        )
    method = _checked_auth_method(spec)
    server_id, capabilities = spec.server_id, spec.capabilities
    if spec.kind == "mcp_server":
        server_id = server_id or client_id
        if len(server_id) > MAX_CLIENT_ID_LENGTH or not _CLIENT_ID.fullmatch(server_id):
            raise _bad("server_id must look like a client id", "server_id")
        capabilities = _checked_tokens(capabilities, "capabilities", MAX_CAPABILITIES)
    elif server_id or capabilities:
        raise _bad("server_id and capabilities are for mcp_server clients only", "server_id")
    return ClientSpec(
        display_name=name,
        kind=spec.kind,
        confidential=spec.confidential,
        redirect_uris=redirect_uris,
        allowed_scopes=_checked_tokens(spec.allowed_scopes, "allowed_scopes", MAX_SCOPES),
        grant_types=grant_types,
        token_endpoint_auth_method=method,
        server_id=server_id,
        capabilities=tuple(capabilities),
        metadata_document_uri=_check_metadata_uri(spec.metadata_document_uri),
        exchange_audiences=_checked_audiences(spec.exchange_audiences),
        exchange_may_impersonate=spec.exchange_may_impersonate,
    )


def _checked_audiences(audiences: Iterable[str]) -> tuple[str, ...]:
    """Audiences and resource indicators a client may request in a token exchange: logical
    names or absolute URIs, printable ASCII without spaces or a fragment."""
    field = "exchange_audiences"
    unique = tuple(dict.fromkeys(audiences))
    if len(unique) > MAX_EXCHANGE_AUDIENCES:
        raise _bad(f"{field} may hold at most {MAX_EXCHANGE_AUDIENCES} entries", field)
    for audience in unique:
        if (
            not audience
            or len(audience) > MAX_URI_LENGTH
            or "#" in audience
            or not all(0x21 <= ord(char) <= 0x7E for char in audience)
        ):
            raise _bad(
                f"{field} must hold names or URIs of 1 to {MAX_URI_LENGTH} printable characters"
                " without spaces or a fragment",
                field,
            )
    return unique


def _checked_grants(spec: ClientSpec) -> tuple[str, ...]:
    grants = tuple(dict.fromkeys(spec.grant_types))
    if not grants:
        if spec.kind == "service":
            grants = (GRANT_CLIENT_CREDENTIALS,)
        elif spec.kind == "mcp_server" and spec.confidential:
            grants = (GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE)
        else:
            grants = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise _bad(f"grant_types must be among {', '.join(GRANT_TYPES)}", "grant_types")
    if not spec.confidential and CONFIDENTIAL_ONLY_GRANTS.intersection(grants):
        raise _bad("a public client cannot use client_credentials or token exchange", "grant_types")
    return grants


def _checked_auth_method(spec: ClientSpec) -> str:
    method = spec.token_endpoint_auth_method or (AUTH_BASIC if spec.confidential else AUTH_NONE)
    if method not in AUTH_METHODS:
        raise _bad(
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}",
            "token_endpoint_auth_method",
        )
    if spec.confidential == (method == AUTH_NONE):
        raise _bad(
            "a confidential client authenticates with its secret; a public one uses none",
            "token_endpoint_auth_method",
        )
    return method


def check_operator_secret(secret: str) -> str:
    """A secret supplied by an operator (not generated here) must be long enough."""
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH or not secret.isprintable():
        raise InvalidRequest(
            f"a client secret must be {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} printable"
            " characters",
            reason="WEAK_CLIENT_SECRET",
        )
    return secret


# -- the registry -------------------------------------------------------------------------


class ClientRegistry:
    """Every client, in memory: the hot path's view (no I/O per call)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._clients: dict[str, ClientRecord] = {}
        # The change-log position each entry reflects, so a late re-read never undoes a newer
        # change applied at commit.
        self._seq: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._clients)

    async def load(self) -> None:
        """Reads every client from the store (at start)."""
        async with self._store.read() as reader:
            loaded = await rows.all_clients(reader)
        self._clients = {client.client_id: client for client in loaded}

    def get(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def authenticate(self, client_id: str, secret: str) -> ClientRecord:
        """The confidential client whose id and secret these are.

        The same work and the same error happen for an unknown id, a public client and a wrong
        secret, so a caller learns nothing about which part was wrong.

        Raises:
            InvalidClient: reason ``INVALID_CLIENT``.
        """
        record = self._clients.get(client_id)
        expected = record.secret_hash if record is not None else ""
        presented = ids.secret_hash(secret[: MAX_SECRET_LENGTH + 1])
        matches = hmac.compare_digest(presented, expected or _UNKNOWN_CLIENT_HASH)
        if (
            record is None
            or not expected
            or not record.confidential
            or len(secret) > MAX_SECRET_LENGTH
            or not matches
        ):
            raise InvalidClient("client authentication failed")
        return record

    def check_scopes(self, client: ClientRecord, requested: Sequence[str]) -> tuple[str, ...]:
        """The scopes to grant: all allowed ones for an empty request, else exactly those asked.

        Raises:
            InvalidScope: naming the first requested scope the client may not have (never a
                silent drop).
        """
        if not requested:
            return client.allowed_scopes
        allowed = set(client.allowed_scopes)
        for scope in requested:
            if scope not in allowed:
                shown = scope[:MAX_SCOPE_LENGTH]
                raise InvalidScope(
                    f"scope {shown!r} is not allowed for this client",
                    metadata={"scope": shown},
                )
        return tuple(dict.fromkeys(requested))

    @staticmethod
    def check_redirect_uri(client: ClientRecord, redirect_uri: str) -> str:
        """``redirect_uri`` if it is one of the client's, compared as exact strings.

        Raises:
            InvalidRequest: reason ``INVALID_REDIRECT_URI``.
        """
        if redirect_uri not in client.redirect_uris:
            raise InvalidRequest(
                "redirect_uri is not registered for this client", reason="INVALID_REDIRECT_URI"
            )
        return redirect_uri

    def put(self, record: ClientRecord, seq: int) -> None:
        """Applies a committed create or update (called at commit)."""
        if self._seq.get(record.client_id, 0) <= seq:
            self._clients[record.client_id] = record
            self._seq[record.client_id] = seq

    def remove(self, client_id: str, seq: int) -> None:
        """Applies a committed delete (called at commit)."""
        if self._seq.get(client_id, 0) <= seq:
            self._clients.pop(client_id, None)
            self._seq[client_id] = seq

    async def on_changes(self, changes: Sequence[Change]) -> None:
        """Change-feed subscriber for ``client.``: re-reads the clients those changes name."""
        latest = {change.key: change.seq for change in changes}
        async with self._store.read() as reader:
            current = {c.client_id: c for c in await rows.clients_by_id(reader, list(latest))}
        for client_id, seq in latest.items():
            record = current.get(client_id)
            if record is None:
                self.remove(client_id, seq)
            else:
                self.put(record, seq)


# -- administration -----------------------------------------------------------------------


def _new_secret() -> str:
    return ids.new_secret(SECRET_PREFIX)


def _hint(secret: str) -> str:
    return secret[:SECRET_HINT_LENGTH]


def _changed_fields(before: ClientSpec, after: ClientSpec) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(ClientSpec)
        if getattr(before, f.name) != getattr(after, f.name)
    ]


def _field_path(path: str) -> str:
    """A FieldMask path in snake_case (JSON clients may send lowerCamelCase)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", path).lower()


class ClientAdmin:
    """Create, read, update, delete and rotate clients; every change audited.

    Args:
        store: the open store.
        registry: updated at each commit so the hot path sees a change at once.
        revoker: the token service; a deleted client's tokens are revoked through it.
    """

    def __init__(
        self,
        store: SqliteStore,
        registry: ClientRegistry,
        *,
        revoker: TokenRevoker | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._revoker = revoker

    # -- RPC-facing (the caller needs an admin scope) ---------------------------------------

    async def create(
        self, caller: Principal, spec: ClientSpec, *, client_id: str = "", request_id: str = ""
    ) -> IssuedClient:
        """Registers a client; a confidential client's secret is in the result, once.

        Raises:
            PermissionDenied: the caller lacks chittyauth:admin / clients:admin.
            InvalidRequest: a bad field (see ``normalized``) or client id.
            AlreadyExists: the client id is taken.
            FailedPrecondition: the id belonged to a client deleted so recently that tokens
                issued to it may still be alive.
        """
        await self._require_admin(caller, "client.created", client_id, request_id)
        return await self.create_trusted(
            caller.subject, spec, client_id=client_id, source="api", request_id=request_id
        )

    async def get(self, caller: Principal, client_id: str, *, request_id: str = "") -> ClientRecord:
        """One client, read from the store.

        Raises:
            PermissionDenied: the caller lacks an admin scope.
            NotFound: no such client.
        """
        await self._require_admin(caller, "client.read", client_id, request_id)
        async with self._store.read() as reader:
            record = await rows.get_client(reader, client_id)
        if record is None:
            raise _not_found(client_id)
        return record

    async def list_clients(
        self,
        caller: Principal,
        *,
        size: int = 0,
        page_token: str = "",
        kind: str = "",
        request_id: str = "",
    ) -> ClientPage:
        """Clients oldest first, ``size`` at a time (default 50, at most 500).

        Raises:
            PermissionDenied: the caller lacks an admin scope.
            InvalidRequest: a bad page token, page size or kind.
        """
        await self._require_admin(caller, "client.list", "", request_id)
        limit = page_size(size)
        after = decode_page_token(page_token)
        if kind and kind not in KINDS:
            raise _bad(f"kind must be one of {', '.join(KINDS)}", "kind")
        async with self._store.read() as reader:
            found = await rows.list_clients(reader, after=after, kind=kind, limit=limit + 1)
        page = tuple(found[:limit])
        token = ""
        if len(found) > limit:
            token = encode_page_token(page[-1].create_time, page[-1].client_id)
        return ClientPage(page, token)

    async def update(
        self,
        caller: Principal,
        client_id: str,
        spec: ClientSpec,
        paths: Sequence[str],
        *,
        request_id: str = "",
    ) -> ClientRecord:
        """Changes exactly the fields named in ``paths`` (FieldMask paths).

        Raises:
            PermissionDenied: the caller lacks an admin scope.
            InvalidRequest: an empty mask, an unknown or immutable path (reason
                ``INVALID_FIELD_MASK``), or a bad value.
            NotFound: no such client.
        """
        await self._require_admin(caller, "client.updated", client_id, request_id)
        fields = [_field_path(path) for path in paths]

        async def work(tx: SqliteTransaction) -> ClientRecord:
            if not fields:
                raise InvalidRequest(
                    "update_mask must name the fields to change", reason="INVALID_FIELD_MASK"
                )
            for path in fields:
                if path in IMMUTABLE_FIELDS:
                    raise InvalidRequest(
                        f"{path} cannot be changed",
                        reason="INVALID_FIELD_MASK",
                        metadata={"path": path},
                    )
                if path not in UPDATABLE_FIELDS:
                    raise InvalidRequest(
                        f"unknown field in update_mask: {path[:64]}",
                        reason="INVALID_FIELD_MASK",
                        metadata={"path": path[:64]},
                    )
            existing = await rows.get_client(tx, client_id)
            if existing is None:
                raise _not_found(client_id)
            changes = {path: getattr(spec, path) for path in fields}
            wanted = dataclasses.replace(ClientSpec.of(existing), **changes)
            return await self._apply_update(tx, caller.subject, existing, wanted, request_id)

        return await self._attempt(caller.subject, "client.updated", client_id, request_id, work)

    async def delete(self, caller: Principal, client_id: str, *, request_id: str = "") -> None:
        """Deletes a client; tokens issued to it stop validating.

        Raises:
            PermissionDenied: the caller lacks an admin scope.
            NotFound: no such client.
        """
        await self._require_admin(caller, "client.deleted", client_id, request_id)

        async def work(tx: SqliteTransaction) -> None:
            existing = await rows.get_client(tx, client_id)
            if existing is None or not await rows.delete_client(tx, client_id):
                raise _not_found(client_id)
            if self._revoker is not None:
                until = tx.now + self._revoker.max_lifetime() + _DELETION_MARGIN_S
                await self._revoker.revoke(tx, "client", client_id, until)
            seq = await tx.append_change("client.deleted", client_id, {"client_id": client_id})
            await tx.audit(
                AuditRecord(
                    actor=caller.subject,
                    subject=client_id,
                    action="client.deleted",
                    outcome="success",
                    resource=f"clients/{client_id}",
                    request_id=request_id,
                    attributes={"kind": existing.kind},
                )
            )
            tx.on_commit(lambda: self._registry.remove(client_id, seq))

        await self._attempt(caller.subject, "client.deleted", client_id, request_id, work)

    async def rotate_secret(
        self, caller: Principal, client_id: str, *, request_id: str = ""
    ) -> IssuedClient:
        """Replaces a confidential client's secret; the new one is in the result, once.

        Raises:
            PermissionDenied: the caller lacks an admin scope.
            NotFound: no such client.
            FailedPrecondition: the client is public (reason ``PUBLIC_CLIENT``).
        """
        await self._require_admin(caller, "client.secret_rotated", client_id, request_id)

        async def work(tx: SqliteTransaction) -> IssuedClient:
            existing = await rows.get_client(tx, client_id)
            if existing is None:
                raise _not_found(client_id)
            if not existing.confidential:
                raise FailedPrecondition("a public client has no secret", reason="PUBLIC_CLIENT")
            secret = _new_secret()
            digest = ids.secret_hash(secret)
            record = dataclasses.replace(
                existing, secret_hash=digest, secret_hint=_hint(secret), update_time=tx.now
            )
            await rows.replace_client(tx, record)
            seq = await tx.append_change(
                "client.secret_rotated", client_id, {"client_id": client_id}
            )
            await tx.audit(
                AuditRecord(
                    actor=caller.subject,
                    subject=client_id,
                    action="client.secret_rotated",
                    outcome="success",
                    resource=f"clients/{client_id}",
                    request_id=request_id,
                    attributes={"secret_sha256_prefix": digest[:8]},
                )
            )
            tx.on_commit(lambda: self._registry.put(record, seq))
            return IssuedClient(record, secret)

        return await self._attempt(
            caller.subject, "client.secret_rotated", client_id, request_id, work
        )

    # -- trusted callers: the clients file and the CLI --------------------------------------

    async def create_trusted(
        self,
        actor: str,
        spec: ClientSpec,
        *,
        client_id: str = "",
        source: str,
        secret: str | None = None,
        request_id: str = "",
        keep_secret: Callable[[str, str], None] | None = None,
    ) -> IssuedClient:
        """Creates a client for an already-authorised actor (no scope check).

        Args:
            actor: who asked, for the audit record (e.g. ``system:clients-file``).
            spec: the client's fields.
            client_id: the id to use; a fresh ``cli_…`` id when empty.
            source: api | file | cli.
            secret: an operator-supplied secret (checked for length); generated when None.
            request_id: correlates the audit record.
            keep_secret: called as ``keep_secret(client_id, secret)`` inside the transaction,
                before commit (the clients file writes the secret file there); if it raises,
                nothing is created.

        Raises:
            InvalidRequest, AlreadyExists, FailedPrecondition: as ``create``.
        """
        audit_id = client_id

        async def work(tx: SqliteTransaction) -> IssuedClient:
            chosen = check_client_id(client_id) if client_id else ids.new_id("cli")
            clean = normalized(spec, chosen)
            if await rows.get_client(tx, chosen) is not None:
                raise AlreadyExists(f"client {chosen} exists already", reason="CLIENT_EXISTS")
            if self._recently_deleted(chosen, tx.now):
                raise FailedPrecondition(
                    f"client id {chosen} was deleted recently; choose another id",
                    reason="CLIENT_ID_RECENTLY_DELETED",
                )
            plain = ""
            if clean.confidential:
                plain = _new_secret() if secret is None else check_operator_secret(secret)
            digest = ids.secret_hash(plain) if plain else ""
            record = ClientRecord(
                client_id=chosen,
                **{f.name: getattr(clean, f.name) for f in dataclasses.fields(ClientSpec)},
                secret_hash=digest,
                secret_hint=_hint(plain),
                source=source,
                create_time=tx.now,
                update_time=tx.now,
            )
            await rows.insert_client(tx, record)
            seq = await tx.append_change("client.created", chosen, {"client_id": chosen})
            attributes = {
                "kind": record.kind,
                "source": source,
                "confidential": str(record.confidential).lower(),
            }
            if digest:
                attributes["secret_sha256_prefix"] = digest[:8]
            await tx.audit(
                AuditRecord(
                    actor=actor,
                    subject=chosen,
                    action="client.created",
                    outcome="success",
                    resource=f"clients/{chosen}",
                    request_id=request_id,
                    attributes=attributes,
                )
            )
            if plain and keep_secret is not None:
                keep_secret(chosen, plain)
            tx.on_commit(lambda: self._registry.put(record, seq))
            return IssuedClient(record, plain)

        return await self._attempt(actor, "client.created", audit_id, request_id, work)

    async def update_trusted(
        self, actor: str, client_id: str, wanted: ClientSpec, *, request_id: str = ""
    ) -> ClientRecord | None:
        """Brings an existing client to ``wanted`` (kind and confidential must match).

        Returns:
            The client after the change, or None when there is no such client.

        Raises:
            InvalidRequest: a bad value, or a change of kind or confidentiality.
        """

        async def work(tx: SqliteTransaction) -> ClientRecord | None:
            existing = await rows.get_client(tx, client_id)
            if existing is None:
                return None
            return await self._apply_update(tx, actor, existing, wanted, request_id)

        return await self._attempt(actor, "client.updated", client_id, request_id, work)

    async def _apply_update(
        self,
        tx: SqliteTransaction,
        actor: str,
        existing: ClientRecord,
        wanted: ClientSpec,
        request_id: str,
    ) -> ClientRecord:
        if wanted.kind != existing.kind or wanted.confidential != existing.confidential:
            raise InvalidRequest(
                "kind and confidential cannot be changed; create a new client",
                reason="INVALID_FIELD_MASK",
            )
        clean = normalized(wanted, existing.client_id)
        changed = _changed_fields(ClientSpec.of(existing), clean)
        if not changed:
            return existing
        record = dataclasses.replace(
            existing,
            **{name: getattr(clean, name) for name in changed},
            update_time=tx.now,
        )
        await rows.replace_client(tx, record)
        seq = await tx.append_change(
            "client.updated", record.client_id, {"client_id": record.client_id}
        )
        await tx.audit(
            AuditRecord(
                actor=actor,
                subject=record.client_id,
                action="client.updated",
                outcome="success",
                resource=f"clients/{record.client_id}",
                request_id=request_id,
                attributes={"fields": ",".join(changed)},
            )
        )
        tx.on_commit(lambda: self._registry.put(record, seq))
        return record

    # -- helpers ----------------------------------------------------------------------------

    def _recently_deleted(self, client_id: str, now: float) -> bool:
        """Whether tokens of a deleted client with this id may still be alive (revoked)."""
        if self._revoker is None:
            return False
        return self._revoker.revocations.client.get(client_id, 0.0) > now

    async def _require_admin(
        self, caller: Principal, action: str, client_id: str, request_id: str
    ) -> None:
        try:
            policy.require_scope(caller, *CLIENT_ADMIN_SCOPES)
        except DomainError as refusal:
            await self._audit_failure(caller.subject, action, client_id, request_id, refusal)
            raise

    async def _attempt(
        self,
        actor: str,
        action: str,
        client_id: str,
        request_id: str,
        work: Callable[[SqliteTransaction], Awaitable[T]],
    ) -> T:
        """Runs ``work`` in one transaction; a refusal rolls it back and is audited alone."""
        try:
            async with self._store.transaction() as tx:
                return await work(tx)
        except DomainError as refusal:
            await self._audit_failure(actor, action, client_id, request_id, refusal)
            raise

    async def _audit_failure(
        self, actor: str, action: str, client_id: str, request_id: str, refusal: DomainError
    ) -> None:
        await audit_refusal(
            self._store, refusal, action=action, actor=actor,
            subject=client_id[:MAX_CLIENT_ID_LENGTH] or "unknown",
            resource=f"clients/{client_id[:MAX_CLIENT_ID_LENGTH]}" if client_id else "",
            request_id=request_id,
        )  # fmt: skip


def _not_found(client_id: str) -> NotFound:
    return NotFound(f"no client {client_id[:MAX_CLIENT_ID_LENGTH]!r}", reason="CLIENT_NOT_FOUND")
