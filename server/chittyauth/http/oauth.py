"""The standard OAuth endpoints, form-encoded: RFC 8414 metadata, /token, /introspect, /revoke.

They call the same domain functions the gRPC servicers call (``MachineGrants``,
``TokenService.validate``, ``OAuthFlows.revoke``) and never re-implement a rule. Errors are raised
as domain errors and rendered as RFC 6749 JSON by the app's middleware (``http/errors.py``).

Client authentication is ``domain/client_auth.py``: these handlers only extract what a request
presents (``presented_client``: Basic header, form body, or the id alone) and ask it, naming the
endpoint; the registered ``token_endpoint_auth_method`` is enforced there. Each endpoint first
charges its rate-limit bucket (``policy.http_rule``) to the client it names and to the caller's
true source address. Introspection answers ``active`` only for a token ``policy.may_introspect``
lets the caller see.

The token endpoint dispatches on ``grant_type`` through a table: ``client_credentials``
(``MachineGrants``), and ``authorization_code``, ``refresh_token`` and RFC 8693 token exchange
(``OAuthFlows``); another grant registers its handler with
:meth:`OAuthEndpoints.register_grant`. ``grant_types_supported`` in the metadata follows the
table, so it never advertises a grant that is not served.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from chittyauth.config import Config
from chittyauth.domain import client_auth, policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.client_auth import PresentedClient
from chittyauth.domain.clients import AUTH_BASIC, AUTH_NONE, AUTH_POST
from chittyauth.domain.errors import (
    DomainError,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    UnsupportedGrantType,
)
from chittyauth.domain.grants import MachineGrants
from chittyauth.domain.oauth import TOKEN_EXCHANGE_GRANT, OAuthFlows, TokenGrant
from chittyauth.domain.tokens import TokenService
from chittyauth.http.errors import (
    JSON_CONTENT_TYPE,
    NO_STORE,
    json_response,
    read_body,
    request_id_of,
    require_content_type,
    source_address_of,
)
from chittyauth.http.metrics import Metrics
from chittyauth.store.sqlite import SqliteStore

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
INTROSPECTION_CACHE_SIZE = 20_000
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"
# A bearer caller of /introspect needs this scope (or chittyauth:admin).
INTROSPECT_SCOPE = policy.INTROSPECT
# The platform's scopes, advertised in the metadata (admin scopes are not advertised).
PLATFORM_SCOPES = ("mcp:read", "mcp:write", "chittyos:services", "cross_sync")

MAX_FORM_FIELDS = 64
MAX_PARAM_LENGTH = 2048
MAX_CLIENT_ID_LENGTH = 256
MAX_SECRET_LENGTH = 1024
MAX_SCOPES = 50
MAX_RESOURCES = 10
MAX_AUDIENCES = 10
MAX_AUDITED_ID = 128
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,128}")


# -- request parts --------------------------------------------------------------------------


class FormParams:
    """The parameters of a form-encoded request, with RFC 6749's rules for reading them."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` has a non-empty value (RFC 6749 §3.1: empty = omitted)."""
        return isinstance(name, str) and any(self._values.get(name, ()))

    def single(self, name: str, *, limit: int = MAX_PARAM_LENGTH) -> str:
        """The value of ``name``; '' when absent or empty (RFC 6749 §3.1: empty = omitted).

        Raises:
            InvalidRequest: the parameter is repeated (RFC 6749 §3.1) or longer than ``limit``.
        """
        values = self._values.get(name, [])
        if len(values) > 1:
            raise InvalidRequest(
                f"{name} must not be repeated", reason="REPEATED_PARAMETER", metadata={"name": name}
            )
        value = values[0] if values else ""
        if len(value) > limit:
            raise InvalidRequest(
                f"{name} is longer than {limit} characters",
                reason="PARAMETER_TOO_LONG",
                metadata={"name": name},
            )
        return value

    def every(self, name: str, *, limit: int, max_count: int) -> tuple[str, ...]:
        """Every non-empty value of a parameter that may repeat (RFC 8707 ``resource``).

        Raises:
            InvalidRequest: more than ``max_count`` values, or one longer than ``limit``.
        """
        values = [v for v in self._values.get(name, []) if v]
        if len(values) > max_count:
            raise InvalidRequest(f"at most {max_count} {name} parameters")
        if any(len(v) > limit for v in values):
            raise InvalidRequest(f"a {name} is longer than {limit} characters")
        return tuple(values)


async def read_form(request: web.Request, max_body_bytes: int) -> FormParams:
    """The form parameters of a ``application/x-www-form-urlencoded`` UTF-8 body.

    Raises:
        UnsupportedMediaType: another content type.
        PayloadTooLarge: a body over ``max_body_bytes``.
        InvalidRequest: undecodable or with too many fields.
    """
    require_content_type(request, FORM_CONTENT_TYPE)
    body = await read_body(request, max_body_bytes)
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(
            f"the form body is not valid UTF-8 form encoding with at most {MAX_FORM_FIELDS} fields",
            reason="MALFORMED_FORM",
        ) from exc
    return FormParams(pairs)


def authorization_scheme(request: web.Request) -> str:
    """``basic``, ``bearer``, another scheme in lower case, or '' without the header."""
    return request.headers.get("Authorization", "").partition(" ")[0].lower()


def presented_client(request: web.Request, form: FormParams) -> PresentedClient | None:
    """The client credentials of a request (RFC 6749 §2.3.1), or None when it carries none.

    Basic credentials are ``form-urlencoded`` before base64 (§2.3.1), so they are decoded
    with ``unquote_plus``. Using Basic and ``client_secret`` together is refused (§2.3).

    Raises:
        InvalidClient: malformed Basic credentials, or a ``client_id`` that contradicts them.
        InvalidRequest: two authentication methods, or a repeated or oversized parameter.
    """
    form_id = form.single("client_id", limit=MAX_CLIENT_ID_LENGTH)
    form_secret = form.single("client_secret", limit=MAX_SECRET_LENGTH)
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise InvalidRequest("send one Authorization header", reason="REPEATED_PARAMETER")
    scheme, _, credentials = (headers[0] if headers else "").partition(" ")
    if scheme.lower() == "basic":
        if form_secret:
            raise InvalidRequest(
                "use one client authentication method, not Basic and client_secret",
                reason="MULTIPLE_CLIENT_AUTHENTICATION",
            )
        client_id, secret = decode_basic(credentials.strip())
        if form_id and form_id != client_id:
            raise InvalidClient("client authentication failed")
        return PresentedClient(client_id, secret, AUTH_BASIC)
    if form_secret:
        if not form_id:
            raise InvalidClient("client authentication failed")
        return PresentedClient(form_id, form_secret, AUTH_POST)
    if form_id:
        return PresentedClient(form_id, "", AUTH_NONE)
    return None


def claimed_client_id(request: web.Request, form: FormParams) -> str:
    """The client id a request names, for its rate-limit bucket; '' when it names none or
    names it badly (the refusal comes later, from ``presented_client``)."""
    try:
        presented = presented_client(request, form)
    except DomainError:
        return ""
    return presented.client_id if presented is not None else ""


def decode_basic(credentials: str) -> tuple[str, str]:
    """(client_id, secret) from a Basic credential; one refusal for every way it is wrong.

    Raises:
        InvalidClient: not base64 of ``id:secret`` in UTF-8 form encoding, or oversized.
    """
    if not credentials or len(credentials) > 4 * (MAX_CLIENT_ID_LENGTH + MAX_SECRET_LENGTH):
        raise _refused()
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        raw_id, colon, raw_secret = decoded.partition(":")
        client_id = urllib.parse.unquote_plus(raw_id, errors="strict")
        secret = urllib.parse.unquote_plus(raw_secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _refused() from exc
    if not colon or not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise _refused()
    if len(secret) > MAX_SECRET_LENGTH:
        raise _refused()
    return client_id, secret


def _refused() -> InvalidClient:
    # Built only when refusing: every authenticated request passes through decode_basic.
    return InvalidClient("client authentication failed")


def parse_scope(value: str) -> tuple[str, ...]:
    """A ``scope`` parameter as scope tokens (RFC 6749 §3.3), duplicates dropped.

    Raises:
        InvalidScope: more than 50 tokens or a token with characters §3.3 does not allow.
    """
    scopes = tuple(dict.fromkeys(part for part in value.split(" ") if part))
    if len(scopes) > MAX_SCOPES or not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise InvalidScope(
            f"scope must be at most {MAX_SCOPES} space-separated RFC 6749 scope tokens"
        )
    return scopes


def _bearer(request: web.Request) -> str | None:
    """The bearer credential of the request, '' for an empty one, None for no bearer."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


# -- the token endpoint's grants ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a grant handler gets: the form, the presented client, the request id."""

    form: FormParams
    client: PresentedClient | None
    request_id: str


@dataclass(frozen=True, slots=True)
class TokenReply:
    """A successful token response (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    # The issued token's use, for the issued-tokens metric.
    token_use: str
    refresh_token: str = field(default="", repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra,
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        return body


GrantHandler = Callable[[TokenRequest], Awaitable[TokenReply]]


class ClientLike(client_auth.RegisteredClient, Protocol):
    """What the endpoints read of a registered client (beyond what authentication reads)."""

    @property
    def allowed_scopes(self) -> tuple[str, ...]: ...

    @property
    def server_id(self) -> str: ...


class ClientDocuments(Protocol):
    """Client ID Metadata Documents (``domain/cimd.py``)."""

    async def ensure(self, client_id: str, *, request_id: str = "") -> None: ...


class Limiter(Protocol):
    """The rate limiter (``IdentityFlows``)."""

    def limit(self, operation: str, client_id: str, address: str) -> None: ...


class ClientLookup(Protocol):
    """What the endpoints need of the client registry (in memory)."""

    def authenticate(self, client_id: str, secret: str) -> ClientLike: ...

    def get(self, client_id: str) -> ClientLike | None: ...


# -- the endpoints --------------------------------------------------------------------------


class OAuthEndpoints:
    """The aiohttp handlers of the RFC endpoints.

    Args:
        config: ``tokens.issuer`` (metadata URLs) and ``http.max_body_bytes``.
        store: For auditing refused client authentications and for revocation.
        tokens: Validates and revokes.
        grants: Issues client-credentials tokens (and audits them).
        flows: The authorization-code, refresh and token-exchange grants (they audit too).
        clients: Returns the client registry, or None while there is none (every client is
            then refused); called per request so a registry attached later is seen.
        metrics: Counts issued tokens and validations.
        documents: Makes a URL client_id (a Client ID Metadata Document) known to the
            registry before a grant looks it up; None when CIMD is off.
        limiter: Returns the rate limiter (``IdentityFlows``), or None before it exists.
    """

    def __init__(
        self,
        *,
        config: Config,
        store: SqliteStore,
        tokens: TokenService,
        grants: MachineGrants,
        flows: OAuthFlows,
        clients: Callable[[], ClientLookup | None],
        metrics: Metrics,
        documents: ClientDocuments | None = None,
        limiter: Callable[[], Limiter | None] = lambda: None,
    ) -> None:
        self._limiter = limiter
        self._issuer = config.tokens.issuer
        self._max_body = config.http.max_body_bytes
        self._max_token = config.tokens.max_token_bytes
        self._store = store
        self._tokens = tokens
        self._grants = grants
        self._flows = flows
        self._clients = clients
        self._metrics = metrics
        self._documents = documents
        # Encoded introspection bodies of verified access tokens, keyed by token and valid
        # while the token service keeps the same claims object (see introspect).
        self._introspected: dict[str, tuple[Mapping[str, Any], bytes]] = {}
        self._grant_handlers: dict[str, GrantHandler] = {
            GRANT_AUTHORIZATION_CODE: self._authorization_code,
            GRANT_REFRESH_TOKEN: self._refresh_token,
            GRANT_CLIENT_CREDENTIALS: self._client_credentials,
            TOKEN_EXCHANGE_GRANT: self._token_exchange,
        }

    def register_grant(self, grant_type: str, handler: GrantHandler) -> None:
        """Serves ``grant_type`` at /token with ``handler`` (and advertises it)."""
        self._grant_handlers[grant_type] = handler

    @property
    def grant_types(self) -> tuple[str, ...]:
        return tuple(self._grant_handlers)

    # -- RFC 8414 ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The authorization server metadata (RFC 8414 §2), URLs built from the issuer."""
        base = self._issuer.rstrip("/")
        return {
            "issuer": self._issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "registration_endpoint": f"{base}/register",
            "jwks_uri": f"{base}/jwks.json",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(self.grant_types),
            "token_endpoint_auth_methods_supported": [AUTH_BASIC, AUTH_POST, AUTH_NONE],
            "introspection_endpoint_auth_methods_supported": [AUTH_BASIC, AUTH_POST],
            "revocation_endpoint_auth_methods_supported": [AUTH_BASIC, AUTH_POST, AUTH_NONE],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(PLATFORM_SCOPES),
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": self._documents is not None,
        }

    async def metadata_handler(self, request: web.Request) -> web.Response:
        return json_response(self.metadata(), headers={"Cache-Control": "public, max-age=300"})

    # -- RFC 6749 §3.2: the token endpoint ---------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """Issues a token for the form's ``grant_type``."""
        form = await read_form(request, self._max_body)
        self._charge(request, "POST /token", claimed_client_id(request, form))
        grant_type = form.single("grant_type", limit=256)
        if not grant_type:
            raise InvalidRequest("grant_type is required", reason="MISSING_GRANT_TYPE")
        handler = self._grant_handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(
                f"grant_type {grant_type[:64]!r} is not supported; supported: "
                + ", ".join(self.grant_types)
            )
        presented = presented_client(request, form)
        if self._documents is not None and presented is not None:
            # A URL client_id is a metadata document: make it known before the grant looks.
            await self._documents.ensure(presented.client_id, request_id=request_id_of(request))
        reply = await handler(TokenRequest(form, presented, request_id_of(request)))
        self._metrics.token_issued(reply.token_use)
        return json_response(reply.body(), headers=NO_STORE)

    async def _client_credentials(self, request: TokenRequest) -> TokenReply:
        """RFC 6749 §4.4 for a confidential client with its secret."""
        scopes = parse_scope(request.form.single("scope"))
        resources = request.form.every("resource", limit=MAX_PARAM_LENGTH, max_count=MAX_RESOURCES)
        client_id, secret, method = _credentials(request.client)
        issued = await self._grants.client_credentials(
            client_id,
            secret,
            scopes,
            resources,
            request_id=request.request_id,
            method=method,
        )
        return TokenReply(
            access_token=issued.token,
            expires_in=max(0, int(issued.expires_at - issued.issued_at)),
            scope=" ".join(issued.scopes),
            token_use=str(issued.claims.get("token_use", "service")),
        )

    async def _authorization_code(self, request: TokenRequest) -> TokenReply:
        """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5); a public client sends only client_id."""
        form = request.form
        client_id, secret, method = _credentials(request.client)
        grant = await self._flows.exchange_code(
            client_id,
            secret,
            form.single("code"),
            form.single("redirect_uri"),
            form.single("code_verifier"),
            request_id=request.request_id,
            method=method,
        )
        return _grant_reply(grant)

    async def _refresh_token(self, request: TokenRequest) -> TokenReply:
        """RFC 6749 §6: rotates the refresh token; ``scope`` may only narrow."""
        form = request.form
        client_id, secret, method = _credentials(request.client)
        grant = await self._flows.refresh(
            client_id,
            secret,
            form.single("refresh_token"),
            parse_scope(form.single("scope")),
            request_id=request.request_id,
            method=method,
        )
        return _grant_reply(grant)

    async def _token_exchange(self, request: TokenRequest) -> TokenReply:
        """RFC 8693 §2.1, by the client's exchange policy (``OAuthFlows.token_exchange``)."""
        form = request.form
        client_id, secret, method = _credentials(request.client)
        grant = await self._flows.token_exchange(
            client_id,
            secret,
            form.single("subject_token", limit=self._max_token),
            form.single("subject_token_type", limit=256),
            form.single("actor_token", limit=self._max_token),
            form.single("actor_token_type", limit=256),
            form.every("audience", limit=MAX_PARAM_LENGTH, max_count=MAX_AUDIENCES),
            form.every("resource", limit=MAX_PARAM_LENGTH, max_count=MAX_RESOURCES),
            parse_scope(form.single("scope")),
            requested_token_type=form.single("requested_token_type", limit=256),
            request_id=request.request_id,
            method=method,
        )
        return _grant_reply(grant)

    # -- RFC 7662 -----------------------------------------------------------------------------

    async def introspect(self, request: web.Request) -> web.Response:
        """Whether a token is active, and its claims; the caller must authenticate.

        RFC 7662 §4: a caller learns about a token only if ``policy.may_introspect`` says so;
        for any other token the answer is the one an unknown token gets.
        """
        form = await read_form(request, self._max_body)
        caller = await self._authorize_introspection(request, form)
        token = form.single("token", limit=self._max_token)
        if not token:
            raise InvalidRequest("token is required", reason="MISSING_TOKEN")
        # token_type_hint is checked for size only: every kind is looked up anyway (§2.1).
        form.single("token_type_hint", limit=64)
        result = self._tokens.validate(token)
        self._metrics.validation(result.active, result.reason)
        if not result.active or not policy.may_introspect(caller, result.claims):
            return json_response({"active": False}, headers=NO_STORE)
        if result.kind != "access_token":
            return json_response(introspection_body(result.claims), headers=NO_STORE)
        # The hot path: a verified token's claims encode to the same body (expiry and
        # revocation were checked above, on this request), so it is encoded once.
        cached = self._introspected.get(token)
        if cached is None or cached[0] is not result.claims:
            body = json_response(introspection_body(result.claims)).body
            assert isinstance(body, bytes)
            if len(self._introspected) >= INTROSPECTION_CACHE_SIZE:
                del self._introspected[next(iter(self._introspected))]
            cached = self._introspected[token] = (result.claims, body)
        return web.Response(body=cached[1], content_type=JSON_CONTENT_TYPE, headers=NO_STORE)

    async def _authorize_introspection(
        self, request: web.Request, form: FormParams
    ) -> policy.Introspector:
        """Who is asking: a client by its registered method, or a bearer with ``introspect``."""
        bearer = _bearer(request)
        if bearer is None:
            presented = presented_client(request, form)
            self._charge(request, "POST /introspect", presented.client_id if presented else "")
            client = await self._authenticate_client(
                presented, "token.introspect", request_id_of(request), client_auth.INTROSPECT
            )
            return policy.Introspector(
                client.client_id,
                names=(client.server_id,) if client.server_id else (),
                scopes=frozenset(client.allowed_scopes),
            )
        try:
            if "client_secret" in form:
                raise InvalidRequest(
                    "use one authentication method, not a bearer token and client_secret",
                    reason="MULTIPLE_CLIENT_AUTHENTICATION",
                )
            principal = self._tokens.principal_for(bearer)
        except DomainError as refusal:
            # A flood of bad bearers is charged to its address (and may be refused for it).
            self._charge(request, "POST /introspect", "")
            await self._audit_failure("bearer", "token.introspect", refusal, request)
            raise
        self._charge(request, "POST /introspect", principal.client_id)
        try:
            policy.require_scope(principal, INTROSPECT_SCOPE)
        except DomainError as refusal:
            await self._audit_failure(principal.client_id, "token.introspect", refusal, request)
            raise
        return policy.Introspector(principal.client_id, scopes=principal.scopes)

    # -- RFC 7009 -----------------------------------------------------------------------------

    async def revoke(self, request: web.Request) -> web.Response:
        """Revokes a token the authenticated client holds; 200 for unknown tokens (§2.2)."""
        form = await read_form(request, self._max_body)
        request_id = request_id_of(request)
        presented = presented_client(request, form)
        self._charge(request, "POST /revoke", presented.client_id if presented else "")
        client = await self._authenticate_client(
            presented, "token.revoke", request_id, client_auth.REVOKE
        )
        token = form.single("token", limit=self._max_token)
        if not token:
            raise InvalidRequest("token is required", reason="MISSING_TOKEN")
        # RFC 7009 §2.1: the server may ignore the hint; every kind is looked up anyway.
        form.single("token_type_hint", limit=64)
        # §2.1: the token must have been issued to the client revoking it.
        await self._flows.revoke(token, request_id=request_id, client_id=client.client_id)
        return web.Response(status=200, headers=NO_STORE)

    # -- shared -------------------------------------------------------------------------------

    def _charge(self, request: web.Request, route: str, client_id: str) -> None:
        """Charges ``route``'s rate-limit bucket to ``client_id`` and the caller's address.

        Raises:
            RateLimited: 429 with ``Retry-After``.
        """
        limiter = self._limiter()
        if limiter is not None:
            limiter.limit(policy.http_rule(route).bucket, client_id, source_address_of(request))

    async def _authenticate_client(
        self,
        presented: PresentedClient | None,
        action: str,
        request_id: str,
        endpoint: client_auth.Endpoint,
    ) -> ClientLike:
        """The registered client behind the request's credentials (``client_auth``);
        refusals are audited."""
        try:
            return client_auth.authenticate_client(self._clients(), presented, endpoint)
        except DomainError as refusal:
            actor = presented.client_id if presented is not None else ""
            await self._write_failure(actor, action, refusal, request_id)
            raise

    async def _audit_failure(
        self, actor: str, action: str, refusal: DomainError, request: web.Request
    ) -> None:
        await self._write_failure(actor, action, refusal, request_id_of(request))

    async def _write_failure(
        self, actor: str, action: str, refusal: DomainError, request_id: str
    ) -> None:
        await audit_refusal(self._store, refusal, action=action, actor=actor, request_id=request_id)


def _credentials(client: PresentedClient | None) -> tuple[str, str, str]:
    """(client_id, secret, method) for a grant. No credentials at all still reach the domain
    (as the ``none`` method of no client), which refuses and audits the attempt."""
    if client is None:
        return "", "", AUTH_NONE
    return client.client_id, client.secret, client.method


def _grant_reply(grant: TokenGrant) -> TokenReply:
    access = grant.access
    extra = {"issued_token_type": grant.issued_token_type} if grant.issued_token_type else {}
    return TokenReply(
        access_token=access.token,
        expires_in=max(0, int(access.expires_at - access.issued_at)),
        scope=" ".join(access.scopes),
        token_use=str(access.claims.get("token_use", "")),
        refresh_token=grant.refresh_token,
        extra=extra,
    )


def introspection_body(claims: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7662 §2.2 members of an active token, from its validated claims."""
    body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti"):
        if name in claims:
            body[name] = claims[name]
    for name in ("token_use", "sid", "chitty_id", "act"):
        if claims.get(name):
            body[name] = claims[name]
    return body
