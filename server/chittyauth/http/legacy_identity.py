"""The historical ChittyAuth routes that issue and check identities, in their old JSON shapes.

Every handler is a thin adapter onto the domain call its gRPC servicer makes (portal and
password logins, the OAuth code flow, MCP server logins, token issuing, API keys, permission
grants, revocation); no rule is re-implemented here. The caller's credential is the
``Authorization: Bearer`` header, resolved with ``TokenService.principal_for`` as the
servicers do. Refusals are domain errors, rendered by the app's middleware in the route's
style: ``{success: false, error}`` (``ErrorStyle.LEGACY_SUCCESS``) or ``{valid: false, error}``
on the validate routes; ``/v1/mcp/linked-app/token`` answers RFC 6749 errors, always 400 as
it historically did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from chittyauth.clock import Clock
from chittyauth.domain import audit, policy
from chittyauth.domain.errors import (
    DomainError,
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UnsupportedGrantType,
)
from chittyauth.domain.oauth import AuthorizationRequest
from chittyauth.domain.principal import Principal
from chittyauth.domain.tokens import TokenService
from chittyauth.http.errors import json_response, oauth_error, request_id_of, source_address_of
from chittyauth.http.legacy import invalid_answer, read_json_object, rfc3339
from chittyauth.http.oauth import decode_basic

MAX_FIELD_CHARS = 2048
MAX_LIST_ITEMS = 50
MAX_ITEM_CHARS = 128
# Historical default lifetime of /v1/tokens/generate ("1h"), and its unit suffixes.
DEFAULT_GENERATE_TTL_S = 3600
_DURATION = re.compile(r"^([1-9][0-9]{0,8})([smhd]?)$")
_UNITS: Mapping[str, int] = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class LegacyIdentityRoutes:
    """Handlers of the historical login, MCP, token, API key and authorization routes.

    Args:
        server: The started server (``chittyauth.app.Server``); its domain objects are
            looked up per request, so ones attached after the shim starts are used.
        tokens: The token service.
        clock: Service time (for ``expires_in``).
        max_body_bytes: Largest accepted request body.
    """

    def __init__(
        self, *, server: Any, tokens: TokenService, clock: Clock, max_body_bytes: int
    ) -> None:
        self._server = server
        self._tokens = tokens
        self._clock = clock
        self._max_body = max_body_bytes

    # -- MCP portal and linked apps -------------------------------------------------------

    async def portal_authenticate(self, request: web.Request) -> web.Response:
        """``POST /v1/mcp/portal/authenticate``: a Cloudflare Access assertion -> portal token."""
        assertion = request.headers.get("Cf-Access-Jwt-Assertion", "").strip()
        email = request.headers.get("Cf-Access-Authenticated-User-Email", "").strip()
        if not assertion:
            raise Unauthenticated(
                "the Cf-Access-Jwt-Assertion header is required", reason="MISSING_ASSERTION"
            )
        if len(assertion) > self._tokens.config.max_token_bytes:
            raise Unauthenticated("the Access assertion is too long", reason="ACCESS_MALFORMED")
        identity = self._identity()
        identity.limit("authenticate", "", source_address_of(request))
        login = await identity.portal.login(
            assertion,
            email,
            scopes=(),
            resources=(),
            device=None,
            request_id=request_id_of(request),
        )
        return json_response(
            {
                "authenticated": True,
                "chitty_id": login.chitty_id,
                "cf_identity": email,
                "portal_token": login.issued.token,
                "mcp_portal_url": login.portal_url,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def linked_app_oauth(self, request: web.Request) -> web.Response:
        """``POST /v1/mcp/linked-app/oauth``: the person (portal token) approves an app."""
        user = await self._principal(request, "POST /v1/mcp/linked-app/oauth")
        body = await read_json_object(request, self._max_body)
        app_id = _text(body, "app_id")
        chitty_id = _text(body, "chitty_id")
        redirect_uri = _text(body, "redirect_uri")
        scopes = _strings(body, "scopes")
        state = _text(body, "state", required=False)
        challenge = _text(body, "code_challenge", required=False)
        if not challenge:
            raise InvalidRequest(
                "code_challenge is required: PKCE (S256) protects every authorization code",
                reason="PKCE_REQUIRED",
                metadata={"field": "code_challenge"},
            )
        if chitty_id != user.chitty_id:
            raise PermissionDenied(
                "chitty_id must be the signed-in person's own", reason="CHITTY_ID_MISMATCH"
            )
        result = await self._server.oauth.authorize(
            user,
            AuthorizationRequest(
                response_type="code",
                client_id=app_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                state=state,
                code_challenge=challenge,
                code_challenge_method="S256",
            ),
            request_id=request_id_of(request),
        )
        return json_response(
            {
                "authorized": True,
                "authorization_code": result.code,
                "redirect_uri": redirect_uri,
                "expires_in": self._expires_in(result.expires_at),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def linked_app_token(self, request: web.Request) -> web.Response:
        """``POST /v1/mcp/linked-app/token``: redeem a code; RFC 6749 errors, always 400."""
        try:
            body = await read_json_object(request, self._max_body)
            grant_type = _text(body, "grant_type")
            if grant_type != "authorization_code":
                raise UnsupportedGrantType("grant_type must be authorization_code")
            client_id = _text(body, "client_id")
            secret = _text(body, "client_secret", required=False)
            code = _text(body, "code")
            verifier = _text(body, "code_verifier")
            redirect_uri = _text(body, "redirect_uri")
            self._identity().limit("exchange", client_id, source_address_of(request))
            grant = await self._server.oauth.exchange_code(
                client_id, secret, code, redirect_uri, verifier, request_id=request_id_of(request)
            )
        except DomainError as refusal:
            response = oauth_error(refusal)
            if response.status == 401:
                # The historical route answered every client error with 400.
                response.set_status(400)
                response.headers.pop("WWW-Authenticate", None)
            return response
        access = grant.access
        return json_response(
            {
                "access_token": access.token,
                "refresh_token": grant.refresh_token,
                "token_type": "Bearer",
                "expires_in": self._expires_in(access.expires_at),
                "scope": " ".join(access.scopes),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    # -- MCP servers ----------------------------------------------------------------------

    async def mcp_authenticate(self, request: web.Request) -> web.Response:
        """``POST /v1/mcp/authenticate``: an MCP server's Basic credentials -> its token.

        With a ``chitty_id`` the token acts for that person, which needs their recorded consent
        to this server's client (403 ``CONSENT_REQUIRED`` otherwise; docs/authz.md).
        """
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise Unauthenticated(
                "the MCP server's client credentials (HTTP Basic) are required",
                reason="MISSING_CLIENT_CREDENTIALS",
            )
        try:
            client_id, secret = decode_basic(credentials.strip())
        except DomainError as exc:
            raise Unauthenticated("client authentication failed", reason="INVALID_CLIENT") from exc
        body = await read_json_object(request, self._max_body)
        server_id = _text(body, "server_id", required=False)
        chitty_id = _text(body, "chitty_id", required=False)
        capabilities = _strings(body, "capabilities")
        self._identity().limit("authenticate", client_id, source_address_of(request))
        issued = await self._identity().mcp_servers.login(
            client_id,
            secret,
            chitty_id=chitty_id,
            capabilities=capabilities,
            scopes=(),
            resources=(),
            request_id=request_id_of(request),
            server_id=server_id,
        )
        claims = issued.claims
        granted_server = str(claims.get("server_id", ""))
        return json_response(
            {
                "success": True,
                "token": issued.token,
                "token_type": "Bearer",
                "expires_in": self._expires_in(issued.expires_at),
                "server_id": granted_server,
                "chitty_id": str(claims.get("chitty_id", "")),
                "capabilities": list(claims.get("capabilities", [])),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def mcp_validate(self, request: web.Request) -> web.Response:
        """``POST /v1/mcp/validate`` (Bearer): whether it is an active MCP server token."""
        result = self._tokens.validate(_bearer(request), token_use="mcp_server")
        if not result.active:
            return invalid_answer(result)
        claims = result.claims
        return json_response(
            {
                "valid": True,
                "server_id": str(claims.get("server_id", "")),
                "chitty_id": str(claims.get("chitty_id", "")),
                "capabilities": list(claims.get("capabilities", [])),
            }
        )

    # -- tokens and API keys --------------------------------------------------------------

    async def generate_token(self, request: web.Request) -> web.Response:
        """``POST /v1/tokens/generate`` (Bearer admin or tokens:issue) -> a user token."""
        principal = await self._principal(request, "POST /v1/tokens/generate")
        body = await read_json_object(request, self._max_body)
        chitty_id = _text(body, "chitty_id")
        ttl_s = _duration(body.get("expires_in"))
        issuer = self._server.servicers["AuthService"].issuer
        if issuer is None:
            raise Unavailable("token issuing is not ready", reason="NOT_READY")
        issued = await issuer.issue(
            principal,
            chitty_id=chitty_id,
            ttl_s=ttl_s,
            extra_claims={},
            scopes=(),
            audiences=(),
            token_use="user",
            request_id=request_id_of(request),
        )
        return json_response(
            {
                "token": issued.token,
                "type": "Bearer",
                "expires_in": self._expires_in(issued.expires_at),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def generate_api_key(self, request: web.Request) -> web.Response:
        """``POST /v1/api-keys/generate`` (Bearer) -> a new API key, shown once."""
        principal = await self._principal(request, "POST /v1/api-keys/generate")
        body = await read_json_object(request, self._max_body)
        chitty_id = _text(body, "chitty_id")
        name = _text(body, "name", required=False)
        scopes = _strings(body, "scopes")
        admin = getattr(self._server, "api_key_admin", None)
        if admin is None:
            raise Unavailable("API keys are not ready", reason="NOT_READY")
        created = await admin.create(
            principal,
            chitty_id=chitty_id,
            display_name=name,
            scopes=scopes,
            request_id=request_id_of(request),
        )
        record = created.api_key
        return json_response(
            {
                "key_id": record.key_id,
                "api_key": created.key,
                "chitty_id": record.chitty_id,
                "scopes": list(record.scopes),
                "created_at": rfc3339(record.created_at),
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- authorizations -------------------------------------------------------------------

    async def grant_authorization(self, request: web.Request) -> web.Response:
        """``POST /v1/authorizations/grant`` (Bearer) -> the new authorization."""
        principal = await self._principal(request, "POST /v1/authorizations/grant")
        body = await read_json_object(request, self._max_body)
        grant = await self._server.permissions.grant(
            principal,
            grantee=_text(body, "grantee_chitty_id"),
            permission=_text(body, "permission"),
            resource=_text(body, "resource", required=False),
            expires_at=_instant(body.get("expires_at")),
            grantor=_text(body, "grantor_chitty_id", required=False),
            request_id=request_id_of(request),
        )
        return json_response({"success": True, "authorization": _grant_json(grant)})

    async def check_authorization(self, request: web.Request) -> web.Response:
        """``POST /v1/authorizations/check`` (Bearer) -> ``{authorized, chitty_id, ...}``."""
        principal = await self._principal(request, "POST /v1/authorizations/check")
        body = await read_json_object(request, self._max_body)
        chitty_id = _text(body, "chitty_id")
        permission = _text(body, "permission")
        resource = _text(body, "resource", required=False)
        grant = await self._server.permissions.check(principal, chitty_id, permission, resource)
        return json_response(
            {
                "authorized": grant is not None,
                "chitty_id": chitty_id,
                "resource": resource,
                "permission": permission,
            }
        )

    async def list_authorizations(self, request: web.Request) -> web.Response:
        """``GET /v1/authorizations/{chitty_id}`` (Bearer) -> a page of live grants."""
        principal = await self._principal(request, "GET /v1/authorizations/{chitty_id}")
        chitty_id = request.match_info["chitty_id"]
        size_text = request.query.get("page_size", "0")
        if not size_text.isdigit() or len(size_text) > 6:
            raise InvalidRequest("page_size must be a non-negative integer", reason="BAD_PAGE_SIZE")
        page = await self._server.permissions.list_grants(
            principal,
            chitty_id,
            page_size=int(size_text),
            page_token=request.query.get("page_token", "")[:MAX_FIELD_CHARS],
            include_inactive=False,
        )
        return json_response(
            {
                "chitty_id": chitty_id,
                "authorizations": [_grant_json(grant) for grant in page.grants],
                "next_page_token": page.next_page_token,
            }
        )

    # -- email + password accounts --------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        """``POST /v1/auth/register {email, password, name}`` -> ``{success, chitty_id}``."""
        body = await read_json_object(request, self._max_body)
        email = _text(body, "email")
        password = _text(body, "password")
        name = _text(body, "name", required=False)
        identity = self._identity()
        identity.limit("register", "", source_address_of(request))
        account = await identity.accounts.register(
            email, password, name, metadata={}, request_id=request_id_of(request)
        )
        return json_response({"success": True, "chitty_id": account.chitty_id})

    async def login(self, request: web.Request) -> web.Response:
        """``POST /v1/auth/login {email, password}`` -> ``{success, token, chitty_id}``."""
        body = await read_json_object(request, self._max_body)
        email = _text(body, "email")
        password = _text(body, "password")
        identity = self._identity()
        identity.limit(
            "authenticate", "account:" + email.strip().lower(), source_address_of(request)
        )
        login = await identity.accounts.login(
            email, password, scopes=(), resources=(), device=None,
            request_id=request_id_of(request),
        )  # fmt: skip
        return json_response(
            {"success": True, "token": login.issued.token, "chitty_id": login.chitty_id},
            headers={"Cache-Control": "no-store"},
        )

    async def validate_session(self, request: web.Request) -> web.Response:
        """``POST /v1/auth/validate`` (Bearer): an active password-login (user) token."""
        result = self._tokens.validate(_bearer(request), token_use="user")
        if not result.active:
            return invalid_answer(result)
        return json_response({"valid": True, "chitty_id": str(result.claims.get("chitty_id", ""))})

    async def logout(self, request: web.Request) -> web.Response:
        """``POST /v1/auth/logout`` (Bearer): revokes the presented token."""
        token = _bearer(request)
        self._tokens.principal_for(token)  # only a live credential may log out
        await self._server.oauth.revoke(token, request_id=request_id_of(request))
        return json_response({"success": True})

    # -- helpers --------------------------------------------------------------------------

    async def _principal(self, request: web.Request, route: str) -> Principal:
        """The caller, admitted by the route's policy row (the row of the RPC it is the old
        form of) and charged to that row's rate-limit bucket."""
        principal = self._tokens.principal_for(_bearer(request))
        rule = policy.http_rule(route)
        await audit.admit(
            getattr(self._server, "store", None), rule, principal,
            request_id=request_id_of(request),
        )  # fmt: skip
        if rule.bucket:
            self._identity().limit(rule.bucket, principal.client_id, source_address_of(request))
        return principal

    def _identity(self) -> Any:
        identity = getattr(self._server, "identity", None)
        if identity is None:
            raise Unavailable("identity flows are not ready", reason="NOT_READY")
        return identity

    def _expires_in(self, expires_at: float) -> int:
        # Rounded up: exp is whole seconds, so a fresh 1 h token reads 3600, not 3599.
        return max(0, math.ceil(expires_at - self._clock.now()))


def _bearer(request: web.Request) -> str:
    """The bearer credential; Unauthenticated without one."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("a bearer token is required", reason="MISSING_BEARER")
    return credential


def _text(body: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    """A string member of the body ('' when optional and absent).

    Raises:
        InvalidRequest: missing (when required), not a string, or too long.
    """
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        kind = "a non-empty string" if required else "a string"
        raise InvalidRequest(
            f"{name} is {'required and ' if required else ''}must be {kind}",
            reason="MISSING_FIELD" if value is None else "INVALID_FIELD",
            metadata={"field": name},
        )
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidRequest(
            f"{name} is longer than {MAX_FIELD_CHARS} characters",
            reason="INVALID_FIELD",
            metadata={"field": name},
        )
    return value


def _strings(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """An optional list of short strings, duplicates dropped."""
    value = body.get(name)
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_LIST_ITEMS
        or not all(isinstance(item, str) and 0 < len(item) <= MAX_ITEM_CHARS for item in value)
    ):
        raise InvalidRequest(
            f"{name} must be a list of at most {MAX_LIST_ITEMS} non-empty strings "
            f"of at most {MAX_ITEM_CHARS} characters",
            reason="INVALID_FIELD",
            metadata={"field": name},
        )
    return tuple(dict.fromkeys(value))


def _duration(value: Any) -> int:
    """``expires_in`` as seconds: a positive integer, or ``"30m"``/``"1h"``/``"7d"``."""
    if value is None:
        return DEFAULT_GENERATE_TTL_S
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            'expires_in must be positive seconds or a duration like "30m", "1h", "7d"',
            reason="INVALID_FIELD",
            metadata={"field": "expires_in"},
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def _instant(value: Any) -> float | None:
    """``expires_at`` as epoch seconds: a number or an RFC 3339 string; None when absent."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise InvalidRequest(
        "expires_at must be epoch seconds or an RFC 3339 time with a zone",
        reason="INVALID_FIELD",
        metadata={"field": "expires_at"},
    )


def _grant_json(grant: Any) -> dict[str, Any]:
    return {
        "authorization_id": grant.grant_id,
        "grantor_chitty_id": grant.grantor,
        "grantee_chitty_id": grant.grantee,
        "permission": grant.permission,
        "resource": grant.resource,
        "created_at": rfc3339(grant.created_at),
        "expires_at": rfc3339(grant.expires_at),
    }
