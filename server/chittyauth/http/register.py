"""RFC 7591 dynamic client registration: ``POST /register``.

Policy ``[oauth] registration_policy``: ``open`` (anyone), or ``token`` (a Bearer
``[oauth] initial_access_token``, compared in constant time; with none configured nobody may
register). Every attempt is charged to the ``register`` rate limit of the caller's address
first (shared with RegisterAccount), so the initial access token cannot be guessed quickly.

A registration makes a ``linked_app`` for the authorization code flow through
``ClientAdmin.create_trusted`` (actor ``system:registration``, audited there): redirect URIs
exact https or http on a loopback host, grant types ``authorization_code`` (+
``refresh_token``), response type ``code``, ``token_endpoint_auth_method`` ``none`` (a public
client, PKCE) or ``client_secret_basic``/``client_secret_post`` (confidential; the secret is
in the answer, once), ``scope`` among the platform scopes (all of them when omitted; admin
scopes never). Other metadata is ignored and not echoed. Errors are RFC 7591 §3.2.2
``invalid_redirect_uri`` / ``invalid_client_metadata``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from chittyauth.config import OAuthConfig
from chittyauth.domain.clients import (
    AUTH_BASIC,
    AUTH_NONE,
    AUTH_POST,
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_REDIRECT_URIS,
    ClientSpec,
    IssuedClient,
    check_redirect_uri,
)
from chittyauth.domain.errors import DomainError, InvalidRequest, Unavailable
from chittyauth.domain.policy import http_rule
from chittyauth.http.errors import (
    JSON_CONTENT_TYPE,
    NO_STORE,
    REALM,
    json_response,
    parse_json,
    read_body,
    request_id_of,
    require_content_type,
    source_address_of,
)
from chittyauth.http.oauth import PLATFORM_SCOPES
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore

REGISTRATION_ACTOR = "system:registration"
MAX_REGISTRATION_BYTES = 16 * 1024
MAX_TOKEN_LENGTH = 1024
DEFAULT_CLIENT_NAME = "Unnamed application"
_GRANTS = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
_AUTH_METHODS = (AUTH_NONE, AUTH_BASIC, AUTH_POST)


class InvalidClientMetadata(InvalidRequest):
    """RFC 7591 §3.2.2 ``invalid_client_metadata``."""

    oauth_error = "invalid_client_metadata"
    reason = "INVALID_CLIENT_METADATA"


class InvalidRedirectUri(InvalidRequest):
    """RFC 7591 §3.2.2 ``invalid_redirect_uri``."""

    oauth_error = "invalid_redirect_uri"
    reason = "INVALID_REDIRECT_URI"


class ClientCreator(Protocol):
    """What registration needs of ``ClientAdmin``."""

    async def create_trusted(
        self, actor: str, spec: ClientSpec, *, source: str, request_id: str = ""
    ) -> IssuedClient: ...


class Limiter(Protocol):
    def limit(self, operation: str, client_id: str, address: str) -> None: ...


def registration_spec(metadata: Mapping[str, Any]) -> ClientSpec:
    """The client to create for RFC 7591 client metadata.

    Raises:
        InvalidRedirectUri: missing, too many or unacceptable redirect URIs.
        InvalidClientMetadata: any other field of the wrong type or value.
    """
    redirect_uris = _strings(metadata, "redirect_uris", None)
    if not redirect_uris:
        raise InvalidRedirectUri("redirect_uris is required (the authorization code flow)")
    if len(redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"at most {MAX_REDIRECT_URIS} redirect_uris")
    for index, uri in enumerate(redirect_uris):
        try:
            check_redirect_uri(uri, index)
        except InvalidRequest as refusal:
            raise InvalidRedirectUri(refusal.message) from None
    grants = _strings(metadata, "grant_types", (GRANT_AUTHORIZATION_CODE,))
    if GRANT_AUTHORIZATION_CODE not in grants or not set(grants) <= set(_GRANTS):
        raise InvalidClientMetadata(
            "grant_types must include authorization_code and may add refresh_token"
        )
    response_types = _strings(metadata, "response_types", ("code",))
    if set(response_types) != {"code"}:
        raise InvalidClientMetadata('response_types must be ["code"]')
    method = _string(metadata, "token_endpoint_auth_method", AUTH_BASIC)
    if method not in _AUTH_METHODS:
        raise InvalidClientMetadata(
            f"token_endpoint_auth_method must be one of {', '.join(_AUTH_METHODS)}"
        )
    name = _string(metadata, "client_name", "") or DEFAULT_CLIENT_NAME
    if len(name) > MAX_DISPLAY_NAME_LENGTH or not name.isprintable():
        raise InvalidClientMetadata(
            f"client_name must be at most {MAX_DISPLAY_NAME_LENGTH} printable characters"
        )
    scope = _string(metadata, "scope", "")
    scopes = tuple(dict.fromkeys(s for s in scope.split(" ") if s)) or PLATFORM_SCOPES
    unknown = [s for s in scopes if s not in PLATFORM_SCOPES]
    if unknown:
        raise InvalidClientMetadata(
            f"scope {unknown[0][:64]!r} cannot be registered; allowed: {' '.join(PLATFORM_SCOPES)}"
        )
    return ClientSpec(
        display_name=name,
        kind="linked_app",
        confidential=method != AUTH_NONE,
        redirect_uris=tuple(redirect_uris),
        allowed_scopes=scopes,
        grant_types=tuple(dict.fromkeys(grants)),
        token_endpoint_auth_method=method,
    )


def _strings(
    metadata: Mapping[str, Any], name: str, default: Sequence[str] | None
) -> Sequence[str]:
    value = metadata.get(name)
    if value is None:
        return default or ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        error = InvalidRedirectUri if name == "redirect_uris" else InvalidClientMetadata
        raise error(f"{name} must be an array of strings")
    return value


def _string(metadata: Mapping[str, Any], name: str, default: str) -> str:
    value = metadata.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidClientMetadata(f"{name} must be a string")
    return value


def registration_body(issued: IssuedClient) -> dict[str, Any]:
    """RFC 7591 §3.2.1: the client information response."""
    client = issued.client
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.create_time),
        "client_name": client.display_name,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": ["code"],
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": " ".join(client.allowed_scopes),
    }
    if issued.secret:
        body["client_secret"] = issued.secret
        body["client_secret_expires_at"] = 0
    return body


class RegistrationEndpoint:
    """The aiohttp handler of ``POST /register``.

    Args:
        config: ``[oauth]``: the policy and the initial access token.
        store: For auditing refused registrations.
        admin: Returns ``ClientAdmin`` (None until clients are built: then 503).
        limiter: Returns the rate limiter (``IdentityFlows``), or None.
    """

    def __init__(
        self,
        *,
        config: OAuthConfig,
        store: SqliteStore,
        admin: Callable[[], ClientCreator | None],
        limiter: Callable[[], Limiter | None],
    ) -> None:
        self._config = config
        self._store = store
        self._admin = admin
        self._limiter = limiter

    async def register(self, request: web.Request) -> web.Response:
        """Registers a client (201) or refuses with an RFC 7591 / RFC 6750 error.

        Raises:
            RateLimited, InvalidRedirectUri, InvalidClientMetadata, Unavailable: rendered as
                OAuth JSON by the app's middleware.
        """
        request_id = request_id_of(request)
        limiter = self._limiter()
        if limiter is not None:
            limiter.limit(http_rule("POST /register").bucket, "", source_address_of(request))
        if not self._authorized(request):
            await self._audit_failure("INVALID_INITIAL_ACCESS_TOKEN", request_id)
            description = "a valid initial access token is required"
            return json_response(
                {"error": "invalid_token", "error_description": description},
                status=401,
                headers={
                    **NO_STORE,
                    "WWW-Authenticate": (
                        f'Bearer realm="{REALM}", error="invalid_token", '
                        f'error_description="{description}"'
                    ),
                },
            )
        admin = self._admin()
        if admin is None:
            raise Unavailable("client registration is not available yet", reason="NOT_READY")
        try:
            spec = registration_spec(await self._metadata(request))
        except DomainError as refusal:
            await self._audit_failure(refusal.reason, request_id)
            raise
        try:
            issued = await admin.create_trusted(
                REGISTRATION_ACTOR, spec, source="api", request_id=request_id
            )
        except InvalidRequest as refusal:  # audited by ClientAdmin
            if refusal.reason == "INVALID_REDIRECT_URI":
                raise InvalidRedirectUri(refusal.message) from None
            raise InvalidClientMetadata(refusal.message) from None
        return json_response(registration_body(issued), status=201, headers=NO_STORE)

    def _authorized(self, request: web.Request) -> bool:
        if self._config.registration_policy == "open":
            return True
        expected = self._config.initial_access_token
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or len(presented) > MAX_TOKEN_LENGTH:
            presented = ""
        # Constant time; an empty configured token matches nothing.
        matches = hmac.compare_digest(
            presented.encode("utf-8", "replace"), expected.encode("utf-8")
        )
        return bool(expected) and bool(presented) and matches

    async def _metadata(self, request: web.Request) -> dict[str, Any]:
        require_content_type(request, JSON_CONTENT_TYPE)
        body = await read_body(request, MAX_REGISTRATION_BYTES)
        try:
            metadata = parse_json(body)
        except InvalidRequest as exc:
            raise InvalidClientMetadata(f"the body is not a JSON object: {exc.message}") from None
        if not isinstance(metadata, dict):
            raise InvalidClientMetadata("the body is not a JSON object")
        return metadata

    async def _audit_failure(self, reason: str, request_id: str) -> None:
        async with self._store.transaction() as tx:
            await tx.audit(
                AuditRecord(
                    actor=REGISTRATION_ACTOR,
                    subject="unknown",
                    action="client.created",
                    outcome="failure",
                    request_id=request_id,
                    attributes={"reason": reason},
                )
            )
