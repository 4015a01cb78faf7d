"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).

A client whose ``client_id`` is an https URL is not registered: its metadata is the JSON
document at that URL. ``ClientMetadataDocuments.ensure`` fetches it (when not cached or
stale), checks it and puts the client into the in-memory ``ClientRegistry`` as a public
``linked_app`` (auth method ``none``, so PKCE), whose redirect URIs are exactly the
document's. Everything that already consults the registry (``OAuthFlows``, /token) then treats
it like any other client; the HTTP endpoints call ``ensure`` before they look a URL id up, so
this is the one place such ids become clients. URL ids never collide with registered ids
(those cannot contain ``/``) and are never stored in the database.

The fetch is hardened against SSRF: https only (http too for loopback when
``cimd_allow_loopback``), the host is resolved first and every address must be global
(loopback only when allowed; private, link-local, reserved, multicast never), and the
connection goes to exactly the checked addresses (a pinned resolver, so a second DNS answer
cannot rebind it); no redirects, a timeout, at most ``cimd_max_bytes``. The document must be
a JSON object whose ``client_id`` equals the URL, with no ``client_secret``.

Cached per ``Cache-Control`` (``max-age``, at most a day; ``no-store``/``no-cache`` = fetched
on every use; five minutes when absent), at most ``cimd_cache_entries`` documents (least
recently used evicted from the registry too).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from chittyauth.clock import Clock
from chittyauth.config import OAuthConfig
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.clients import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    LOOPBACK_HOSTS,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_REDIRECT_URIS,
    ClientRecord,
    check_redirect_uri,
)
from chittyauth.domain.errors import DomainError, InvalidClient, InvalidRequest
from chittyauth.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 256  # the token endpoint reads client_id up to this length
DEFAULT_TTL_S = 300
MAX_TTL_S = 86400
SOURCE = "cimd"
# The platform scopes a document may ask for (never admin scopes).
DOCUMENT_SCOPES = ("mcp:read", "mcp:write", "chittyos:services", "cross_sync")
_GRANTS = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


class DocumentRefused(InvalidClient):
    """The client's metadata document could not be used (the message says why)."""

    reason = "CLIENT_METADATA_DOCUMENT_REFUSED"


class RegistryWriter(Protocol):
    """What the documents need of ``ClientRegistry``: in-memory entries at seq 0."""

    def put(self, record: ClientRecord, seq: int) -> None: ...

    def remove(self, client_id: str, seq: int) -> None: ...


def is_document_client_id(client_id: str) -> bool:
    """Whether ``client_id`` names a metadata document (an https or http URL)."""
    return client_id.startswith(("https://", "http://"))


@dataclass(frozen=True, slots=True)
class _Cached:
    record: ClientRecord
    expires_at: float


class _PinnedResolver(AbstractResolver):
    """Answers only with the addresses already checked for this host."""

    def __init__(self, host: str, addresses: list[tuple[int, str]]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"unexpected host {host!r}")
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=fam, proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for fam, address in self._addresses
        ]  # fmt: skip

    async def close(self) -> None:
        return None


class ClientMetadataDocuments:
    """Fetches, checks and caches client metadata documents into the client registry.

    Args:
        config: ``[oauth]`` cimd settings.
        registry: The in-memory client registry the flows consult.
        store: For auditing refused documents.
        clock: Service time (cache expiry).
    """

    def __init__(
        self, config: OAuthConfig, registry: RegistryWriter, store: SqliteStore, clock: Clock
    ) -> None:
        self._config = config
        self._registry = registry
        self._store = store
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._ca_file = config.cimd_ca_file or None

    def __len__(self) -> int:
        return len(self._cache)

    async def ensure(self, client_id: str, *, request_id: str = "") -> None:
        """Makes the document client ``client_id`` known to the registry, fetching if needed.

        Does nothing for an id that is not a URL.

        Raises:
            DocumentRefused: the URL, the fetch or the document is not acceptable (the
                refusal is audited as ``client.metadata_document``, and a stale entry dropped).
        """
        if not is_document_client_id(client_id):
            return
        now = self._clock.now()
        cached = self._cache.get(client_id)
        if cached is not None and now < cached.expires_at:
            self._cache.move_to_end(client_id)
            return
        try:
            record, ttl = await self._fetch(client_id, now)
        except DocumentRefused as refusal:
            self._forget(client_id)
            log.warning(
                "client metadata document refused",
                extra={"client_id": client_id[:MAX_URL_LENGTH], "why": refusal.message},
            )
            await self._audit_refusal(client_id, refusal, request_id)
            raise
        self._cache[client_id] = _Cached(record, now + ttl)
        self._cache.move_to_end(client_id)
        self._registry.put(record, 0)
        while len(self._cache) > max(1, self._config.cimd_cache_entries):
            evicted, _ = self._cache.popitem(last=False)
            self._registry.remove(evicted, 0)

    def _forget(self, client_id: str) -> None:
        if self._cache.pop(client_id, None) is not None:
            self._registry.remove(client_id, 0)

    # -- fetching -----------------------------------------------------------------------

    async def _fetch(self, url: str, now: float) -> tuple[ClientRecord, float]:
        host, port = self._checked_url(url)
        addresses = await self._checked_addresses(host, port)
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(host, addresses), ssl=self._ssl, use_dns_cache=False
        )
        limit = self._config.cimd_max_bytes
        timeout = aiohttp.ClientTimeout(total=self._config.cimd_fetch_timeout_s)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get(
                    url, allow_redirects=False, headers={"Accept": "application/json"}
                ) as response,
            ):
                if response.status != 200:
                    raise DocumentRefused(
                        f"the metadata document answered HTTP {response.status} (redirects are"
                        " not followed)"
                    )
                if response.content_length is not None and response.content_length > limit:
                    raise DocumentRefused(f"the metadata document is larger than {limit} bytes")
                raw = await response.content.read(limit + 1)
                cache_control = response.headers.get("Cache-Control", "")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            raise DocumentRefused(
                f"the metadata document cannot be fetched ({type(exc).__name__})"
            ) from None
        if len(raw) > limit:
            raise DocumentRefused(f"the metadata document is larger than {limit} bytes")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise DocumentRefused("the metadata document is not JSON") from None
        record = self._record(url, document, now)
        return record, cache_ttl(cache_control)

    def _checked_url(self, url: str) -> tuple[str, int]:
        refused = DocumentRefused("client_id is not a usable metadata document URL")
        if len(url) > MAX_URL_LENGTH or not all(0x21 <= ord(c) <= 0x7E for c in url):
            raise refused
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise refused from None
        host = parts.hostname or ""
        loopback_http = (
            parts.scheme == "http" and self._config.cimd_allow_loopback and host in LOOPBACK_HOSTS
        )
        if parts.scheme != "https" and not loopback_http:
            raise refused
        segments = parts.path.split("/")
        if (
            not host
            or parts.username is not None
            or parts.password is not None
            or parts.fragment
            or "#" in url
            or parts.path in ("", "/")
            or "." in segments
            or ".." in segments
        ):
            raise refused
        return host, port or (443 if parts.scheme == "https" else 80)

    async def _checked_addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise DocumentRefused("the metadata document host does not resolve") from None
        addresses: list[tuple[int, str]] = []
        for family, _, _, _, sockaddr in infos:
            address = str(sockaddr[0])
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            allowed = ip.is_global and not ip.is_multicast
            if ip.is_loopback and self._config.cimd_allow_loopback:
                allowed = True
            if not allowed:
                # One bad answer refuses the host: it may be how a rebinding attack starts.
                raise DocumentRefused("the metadata document host is not a public address")
            if (family, address) not in addresses:
                addresses.append((family, address))
        if not addresses:
            raise DocumentRefused("the metadata document host does not resolve")
        return addresses

    # -- the document -------------------------------------------------------------------

    def _record(self, url: str, document: Any, now: float) -> ClientRecord:
        if not isinstance(document, dict):
            raise DocumentRefused("the metadata document is not a JSON object")
        if document.get("client_id") != url:
            raise DocumentRefused("the metadata document's client_id is not its URL")
        if "client_secret" in document or "client_secret_expires_at" in document:
            raise DocumentRefused("a metadata document must not carry a client secret")
        method = document.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise DocumentRefused("only token_endpoint_auth_method none is supported")
        redirect_uris = _strings(document, "redirect_uris", ())
        if not redirect_uris or len(redirect_uris) > MAX_REDIRECT_URIS:
            raise DocumentRefused(f"redirect_uris must hold 1 to {MAX_REDIRECT_URIS} URIs")
        try:
            for index, uri in enumerate(redirect_uris):
                check_redirect_uri(uri, index)
        except InvalidRequest as refusal:
            raise DocumentRefused(refusal.message) from None
        grants = _strings(document, "grant_types", (GRANT_AUTHORIZATION_CODE,))
        if GRANT_AUTHORIZATION_CODE not in grants or not set(grants) <= set(_GRANTS):
            raise DocumentRefused("grant_types may be authorization_code and refresh_token only")
        if not set(_strings(document, "response_types", ("code",))) <= {"code"}:
            raise DocumentRefused('response_types must be ["code"]')
        scope = document.get("scope", "")
        if not isinstance(scope, str):
            raise DocumentRefused("scope must be a string")
        scopes = tuple(dict.fromkeys(s for s in scope.split(" ") if s)) or DOCUMENT_SCOPES
        if not set(scopes) <= set(DOCUMENT_SCOPES):
            raise DocumentRefused(f"scope must be among {' '.join(DOCUMENT_SCOPES)}")
        name = document.get("client_name") or urlsplit(url).hostname or url
        if (
            not isinstance(name, str)
            or len(name) > MAX_DISPLAY_NAME_LENGTH
            or not name.isprintable()
        ):
            raise DocumentRefused("client_name must be a short printable string")
        return ClientRecord(
            client_id=url,
            display_name=name,
            kind="linked_app",
            confidential=False,
            redirect_uris=tuple(dict.fromkeys(redirect_uris)),
            allowed_scopes=scopes,
            grant_types=tuple(dict.fromkeys(grants)),
            token_endpoint_auth_method="none",
            server_id="",
            capabilities=(),
            metadata_document_uri=url,
            secret_hash="",
            secret_hint="",
            source=SOURCE,
            create_time=now,
            update_time=now,
        )

    @functools.cached_property
    def _ssl(self) -> ssl.SSLContext:
        """Built on first fetch: loading the CA store would otherwise slow every start-up."""
        return ssl.create_default_context(cafile=self._ca_file)

    async def _audit_refusal(self, url: str, refusal: DomainError, request_id: str) -> None:
        await audit_refusal(
            self._store, refusal, action="client.metadata_document", actor=url,
            request_id=request_id, attributes={"why": refusal.message[:200]},
        )  # fmt: skip


def _strings(document: dict[str, Any], name: str, default: tuple[str, ...]) -> list[str]:
    value = document.get(name)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DocumentRefused(f"{name} must be an array of strings")
    return value


def cache_ttl(cache_control: str) -> float:
    """Seconds to keep a document: ``max-age`` (at most a day), 0 for no-store/no-cache."""
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return float(DEFAULT_TTL_S)
    return float(min(int(match.group(1)), MAX_TTL_S))
