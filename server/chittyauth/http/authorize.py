"""The browser side of the code flow: ``GET``/``POST /authorize`` and ``POST /portal/login``.

Who the user is: the portal session cookie (it holds the person's ``portal`` access token,
validated in memory like any bearer, so a revoked session or an expired token ends it), or
else a ``Cf-Access-Jwt-Assertion`` header, which logs the person in through
``PortalLogins`` (a new session) and sets the cookie. The cookie is HttpOnly, SameSite=Lax,
``Path=/``, and Secure (named ``__Host-chittyauth_portal``) unless the issuer is http on a
loopback host (then ``chittyauth_portal``, for local development).

The order of checks follows RFC 6749 §4.1.2.1: an unknown client or a redirect URI that is not
registered is an HTML page (400) and never a redirect; every other problem with the request
is sent back to the redirect URI with ``error``, ``error_description``, ``state`` and ``iss``
(RFC 9207). Only then is the user needed (401 page, or a redirect to ``[http] login_url``).

Consent is a server-rendered form posted back to ``/authorize``. Its CSRF token is
``<expiry>.<HMAC-SHA256(key, chitty_id, expiry, every request parameter)>`` with a key
derived from the key-encryption key (so every replica accepts it), compared in constant time,
valid ``[oauth] consent_ttl_s``. Approval calls ``OAuthFlows.authorize`` and redirects with
``code``, ``state`` and ``iss``; denial redirects with ``error=access_denied``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from chittyauth.clock import Clock
from chittyauth.config import Config
from chittyauth.domain import policy
from chittyauth.domain.clients import LOOPBACK_HOSTS, ClientRecord
from chittyauth.domain.errors import (
    DomainError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from chittyauth.domain.oauth import MAX_STATE, AuthorizationRequest, OAuthFlows, redirect_with
from chittyauth.domain.principal import Principal
from chittyauth.domain.tokens import TokenService
from chittyauth.http.errors import (
    json_response,
    oauth_description,
    request_id_of,
    source_address_of,
)
from chittyauth.http.oauth import (
    MAX_CLIENT_ID_LENGTH,
    FormParams,
    parse_scope,
    read_form,
)
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

ASSERTION_HEADER = "Cf-Access-Jwt-Assertion"
EMAIL_HEADER = "Cf-Access-Authenticated-User-Email"
SECURE_COOKIE = "__Host-chittyauth_portal"
LOOPBACK_COOKIE = "chittyauth_portal"
MAX_COOKIE_BYTES = 4096
MAX_URI_PARAM = 2048
MAX_RETURN_TO = 4096
# The request parameters a consent form carries, in this order (RFC 6749 §4.1.1, 7636, 8707).
_SINGLE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


class ClientSource(Protocol):
    """What /authorize reads of the client registry (in memory)."""

    def check_scopes(self, client: ClientRecord, requested: Sequence[str]) -> tuple[str, ...]: ...


class ClientDocuments(Protocol):
    """Client ID Metadata Documents (``domain/cimd.py``): makes a URL client_id known."""

    async def ensure(self, client_id: str, *, request_id: str = "") -> None: ...


class PortalLogin(Protocol):
    """What the routes need of ``PortalLogins``."""

    async def login(
        self,
        assertion: str,
        email_header: str,
        *,
        scopes: Sequence[str],
        resources: Sequence[str],
        device: Any,
        request_id: str,
    ) -> Any: ...


class Limiter(Protocol):
    def limit(self, operation: str, client_id: str, address: str) -> None: ...


# -- the cookie and the CSRF token ---------------------------------------------------------


def cookie_is_secure(issuer: str) -> bool:
    """False only for an http issuer on a loopback host (local development)."""
    parts = urlsplit(issuer)
    return not (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS)


class ConsentSigner:
    """Signs and checks the CSRF token of a consent form.

    Args:
        key: 32 secret bytes shared by every replica.
        ttl_s: how long a form stays valid.
    """

    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = hmac.new(key, b"chittyauth/consent-csrf/v1", hashlib.sha256).digest()
        self._ttl_s = ttl_s

    def sign(self, chitty_id: str, params: Mapping[str, Sequence[str]], now: float) -> str:
        """The token for ``chitty_id`` approving exactly ``params``."""
        expires = int(now) + self._ttl_s
        return f"{expires}.{self._mac(chitty_id, params, expires)}"

    def verify(
        self, token: str, chitty_id: str, params: Mapping[str, Sequence[str]], now: float
    ) -> bool:
        """Whether ``token`` was signed for this person and these parameters and is current."""
        expires_text, dot, mac = token.partition(".")
        if not dot or not expires_text.isdigit() or len(token) > 128:
            return False
        expires = int(expires_text)
        expected = self._mac(chitty_id, params, expires)
        # Compare first, then judge the time, so the work does not depend on the expiry.
        matches = hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii"))
        return matches and now <= expires

    def _mac(self, chitty_id: str, params: Mapping[str, Sequence[str]], expires: int) -> str:
        canonical = json.dumps(
            [chitty_id, expires, sorted((k, list(v)) for k, v in params.items())],
            separators=(",", ":"),
        )
        digest = hmac.new(self._key, canonical.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def consent_key(config: Config) -> bytes:
    """The CSRF key, derived from the key-encryption key (the same on every replica)."""
    from chittyauth.domain.keys import key_encryption_key

    kek = key_encryption_key(config.keys, production=config.is_production)
    return hmac.new(kek, b"chittyauth/http/consent", hashlib.sha256).digest()


# -- pages ---------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.3rem}ul{padding-left:1.2rem}button{font-size:1rem;"
    "padding:.5rem 1.2rem;margin-right:.5rem}code{background:#f3f3f3;padding:0 .2rem}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def page_headers(form_target: str = "") -> dict[str, str]:
    """No caching, no framing, nothing loaded: only inline style and a form to ourselves.

    ``form_target`` is the client's redirect origin: browsers apply ``form-action`` to the
    redirect that follows the form's POST as well.
    """
    form_action = "'self'" + (f" {form_target}" if form_target else "")
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        ),
    }


def html_response(status: int, title: str, body: str, *, form_target: str = "") -> web.Response:
    return web.Response(
        status=status,
        text=_page(title, body),
        content_type="text/html",
        charset="utf-8",
        headers=page_headers(form_target),
    )


def error_page(status: int, message: str) -> web.Response:
    """An error shown to the person (used when a redirect would be unsafe)."""
    title = "Authorization failed" if status < 500 else "Service unavailable"
    return html_response(
        status, title, f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
    )


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    """An authorization request, the client it names, and its parameters as sent."""

    client: ClientRecord
    request: AuthorizationRequest
    params: dict[str, tuple[str, ...]]


def _authorization_params(source: FormParams) -> dict[str, tuple[str, ...]]:
    """The request's parameters (each single one checked for repetition and length)."""
    params: dict[str, tuple[str, ...]] = {}
    for name in _SINGLE_PARAMS:
        limit = MAX_CLIENT_ID_LENGTH if name == "client_id" else MAX_URI_PARAM
        value = source.single(name, limit=limit)
        params[name] = (value,) if value else ()
    params["resource"] = source.every("resource", limit=MAX_URI_PARAM, max_count=10)
    return params


def _one(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name, ())
    return values[0] if values else ""


class _RedirectableError(Exception):
    """A refusal to send back to the (already checked) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _redirect_error(refusal: DomainError) -> _RedirectableError:
    """The RFC 6749 §4.1.2.1 error code for a refusal."""
    if refusal.reason == "UNSUPPORTED_RESPONSE_TYPE":
        code = "unsupported_response_type"
    elif isinstance(refusal, RateLimited | Unavailable):
        code = "temporarily_unavailable"
    else:
        # PermissionDenied is access_denied; ScopeNotGrantable, a kind of it, invalid_scope.
        code = refusal.oauth_error
    return _RedirectableError(code, refusal.message)


# -- the routes ----------------------------------------------------------------------------


class AuthorizeRoutes:
    """``GET``/``POST /authorize`` and ``POST /portal/login``.

    Args:
        config: issuer, ``[http] login_url``, ``[oauth] consent_ttl_s``, body limits.
        store: For auditing consent refusals and denials.
        tokens: Validates the cookie's portal token.
        flows: ``check_request`` and ``authorize``.
        clients: Returns the client registry (None until there is one).
        portal: Returns the portal logins (None until identity is built).
        limiter: Returns the rate limiter (``IdentityFlows``), or None.
        documents: Client ID Metadata Documents, consulted for https client ids (or None).
        clock: Service time (CSRF expiry).
        csrf_key: The consent CSRF key (``consent_key(config)``).
    """

    def __init__(
        self,
        *,
        config: Config,
        store: SqliteStore,
        tokens: TokenService,
        flows: OAuthFlows,
        clients: Callable[[], ClientSource | None],
        portal: Callable[[], PortalLogin | None],
        limiter: Callable[[], Limiter | None],
        documents: ClientDocuments | None,
        clock: Clock,
        csrf_key: bytes,
    ) -> None:
        self._issuer = config.tokens.issuer
        self._login_url = config.http.login_url
        self._max_body = config.http.max_body_bytes
        self._store = store
        self._tokens = tokens
        self._flows = flows
        self._clients = clients
        self._portal = portal
        self._limiter = limiter
        self._documents = documents
        self._clock = clock
        self._signer = ConsentSigner(csrf_key, config.oauth.consent_ttl_s)
        self._secure = cookie_is_secure(self._issuer)
        self.cookie_name = SECURE_COOKIE if self._secure else LOOPBACK_COOKIE

    # -- GET /authorize ---------------------------------------------------------------------

    async def authorize_get(self, request: web.Request) -> web.StreamResponse:
        """Checks the request, identifies the user and shows the consent page."""
        return await self._guarded(request, self._show_consent)

    async def _show_consent(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(FormParams(list(request.query.items())), request_id_of(request))
        if isinstance(parsed, web.StreamResponse):
            return parsed
        user, cookie = await self._user(request)
        if user is None:
            return self._login_required(request)
        assert user.chitty_id  # _user returns only portal principals with a ChittyID
        try:
            # Never ask a person to grant what their token cannot: the same check approval makes.
            scopes, _ = self._flows.check_approval(user, parsed.client, parsed.request)
        except DomainError as refusal:
            response = self._error_redirect(parsed, _redirect_error(refusal))
        else:
            token = self._signer.sign(user.chitty_id, parsed.params, self._clock.now())
            response = self._consent_page(parsed, scopes, token)
        if cookie is not None:
            self._set_cookie(response, *cookie)
        return response

    # -- POST /authorize --------------------------------------------------------------------

    async def authorize_post(self, request: web.Request) -> web.StreamResponse:
        """The consent form: approve -> a code, deny -> access_denied; both redirect."""
        return await self._guarded(request, self._decide)

    async def _decide(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request, self._max_body)
        parsed = await self._parse(form, request_id_of(request))
        if isinstance(parsed, web.StreamResponse):
            return parsed
        user, cookie = await self._user(request)
        if user is None:
            return self._login_required(request, post=True)
        request_id = request_id_of(request)
        client_id = parsed.client.client_id
        csrf = form.single("csrf_token", limit=256)
        if not self._signer.verify(csrf, user.chitty_id, parsed.params, self._clock.now()):
            await self._audit(user, client_id, "oauth.consent", "failure", request_id,
                              {"reason": "CSRF_TOKEN_INVALID"})  # fmt: skip
            return error_page(403, "The consent form has expired or is not valid. Start again.")
        decision = form.single("decision", limit=16)
        response: web.StreamResponse
        if decision == "deny":
            await self._audit(user, client_id, "oauth.consent", "failure", request_id,
                              {"reason": "ACCESS_DENIED"})  # fmt: skip
            response = self._error_redirect(
                parsed, _RedirectableError("access_denied", "the user denied the request")
            )
        elif decision == "approve":
            response = await self._approve(request, user, parsed)
        else:
            return error_page(400, "The consent form was not answered.")
        if cookie is not None:
            self._set_cookie(response, *cookie)
        return response

    async def _approve(
        self, request: web.Request, user: Principal, parsed: _Parsed
    ) -> web.StreamResponse:
        try:
            limiter = self._limiter()
            if limiter is not None:
                limiter.limit("authorize", parsed.client.client_id, source_address_of(request))
            granted = await self._flows.authorize(
                user, parsed.request, request_id=request_id_of(request)
            )
        except DomainError as refusal:
            return self._error_redirect(parsed, _redirect_error(refusal))
        return _redirect(granted.redirect_url)

    # -- POST /portal/login -----------------------------------------------------------------

    async def portal_login(self, request: web.Request) -> web.StreamResponse:
        """Cloudflare Access assertion -> the portal session cookie.

        Redirects (303) to ``return_to`` when it is a path under ``/authorize``; otherwise
        answers JSON with the ChittyID, session id and expiry (never the token).

        Raises:
            Unauthenticated: no or a bad assertion (audited by ``PortalLogins``).
            PermissionDenied: a cross-origin request (login CSRF).
            Unavailable: the authority or the Access keys cannot be reached.
        """
        origin = request.headers.get("Origin")
        if origin is not None and origin != _origin(self._issuer):
            raise PermissionDenied("cross-origin login refused", reason="CROSS_ORIGIN")
        return_to = request.query.get("return_to", "")
        if len(return_to) > MAX_RETURN_TO:
            raise InvalidRequest("return_to is too long", reason="PARAMETER_TOO_LONG")
        assertion = request.headers.get(ASSERTION_HEADER, "")
        if not assertion:
            raise Unauthenticated(
                f"a {ASSERTION_HEADER} header is required", reason="ACCESS_MISSING"
            )
        login = await self._login(request, assertion)
        if login is None:
            raise Unavailable("portal login is not available yet", reason="NOT_READY")
        issued = login.issued
        response: web.StreamResponse
        if _is_authorize_path(return_to):
            response = web.Response(
                status=303, headers={"Location": return_to, "Cache-Control": "no-store"}
            )
        else:
            response = json_response(
                {
                    "chitty_id": login.chitty_id,
                    "session_id": login.session_id,
                    "expires_at": int(issued.expires_at),
                },
                headers={"Cache-Control": "no-store"},
            )
        self._set_cookie(response, issued.token, int(issued.expires_at - issued.issued_at))
        return response

    # -- shared -----------------------------------------------------------------------------

    async def _guarded(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Runs ``handler``; a refusal that escapes becomes an HTML page, never a redirect."""
        try:
            return await handler(request)
        except _RedirectableError as exc:  # pragma: no cover - always caught inside
            return error_page(400, exc.description)
        except DomainError as refusal:
            status = refusal.http_status if refusal.http_status in (413, 415, 429, 503) else 400
            if isinstance(refusal, Unavailable):
                status = 503
            return error_page(status, refusal.message)

    async def _parse(self, source: FormParams, request_id: str) -> _Parsed | web.StreamResponse:
        """The client and the checked request; a page or an error redirect when not usable."""
        try:
            params = _authorization_params(source)
        except DomainError as refusal:
            return error_page(400, refusal.message)
        client_id, redirect_uri = _one(params, "client_id"), _one(params, "redirect_uri")
        if not client_id:
            return error_page(400, "client_id is required.")
        if self._documents is not None:
            await self._documents.ensure(client_id, request_id=request_id)
        try:
            client = self._flows.check_request(
                AuthorizationRequest("", client_id, redirect_uri, (), "", "", "")
            )
        except DomainError as refusal:
            # Never redirect to a URI we cannot vouch for (no open redirector).
            return error_page(400, refusal.message)
        state = _one(params, "state")
        try:
            authorization = AuthorizationRequest(
                response_type=_one(params, "response_type"),
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scopes=parse_scope(_one(params, "scope")),
                state=state,
                code_challenge=_one(params, "code_challenge"),
                code_challenge_method=_one(params, "code_challenge_method"),
                resources=params["resource"],
            )
            self._flows.validate_request(client, authorization)
        except DomainError as refusal:
            parsed = _Parsed(client, _stub_request(client, redirect_uri, state), params)
            return self._error_redirect(parsed, _redirect_error(refusal))
        return _Parsed(client, authorization, params)

    def _error_redirect(self, parsed: _Parsed, error: _RedirectableError) -> web.Response:
        params = {"error": error.error, "error_description": oauth_description(error.description)}
        state = parsed.request.state
        if state and len(state) <= MAX_STATE:
            params["state"] = state
        params["iss"] = self._issuer
        return _redirect(redirect_with(parsed.request.redirect_uri, params))

    async def _user(self, request: web.Request) -> tuple[Principal | None, tuple[str, int] | None]:
        """The signed-in person, and a new cookie (token, max-age) when one was just made."""
        cookie = request.cookies.get(self.cookie_name, "")
        if cookie and len(cookie) <= MAX_COOKIE_BYTES:
            user = self._portal_principal(cookie)
            if user is not None:
                return user, None
        assertion = request.headers.get(ASSERTION_HEADER, "")
        if not assertion:
            return None, None
        try:
            login = await self._login(request, assertion)
        except Unauthenticated:
            return None, None  # audited by PortalLogins; the person is simply not signed in
        if login is None:
            return None, None
        issued = login.issued
        user = self._portal_principal(issued.token)
        return user, (issued.token, int(issued.expires_at - issued.issued_at))

    def _portal_principal(self, token: str) -> Principal | None:
        try:
            user = self._tokens.principal_for(token)
        except DomainError:
            return None
        # The cookie holds a portal session; whoever it names approves only if the policy says
        # the token is the person's own (never a token acting for them).
        if user.token_use != "portal" or not policy.may_approve(user):
            return None
        return user

    async def _login(self, request: web.Request, assertion: str) -> Any:
        portal = self._portal()
        if portal is None:
            return None
        limiter = self._limiter()
        if limiter is not None:
            limiter.limit("authenticate", "", source_address_of(request))
        return await portal.login(
            assertion,
            request.headers.get(EMAIL_HEADER, ""),
            scopes=(),
            resources=(),
            device=None,
            request_id=request_id_of(request),
        )

    def _login_required(self, request: web.Request, *, post: bool = False) -> web.Response:
        if self._login_url and not post:
            target = redirect_with(self._login_url, {"return_to": str(request.rel_url)})
            return _redirect(target)
        return html_response(
            401,
            "Sign in required",
            "<h1>Sign in required</h1><p>Sign in to the ChittyOS portal, then try again.</p>",
        )

    def _set_cookie(self, response: web.StreamResponse, token: str, max_age: int) -> None:
        response.set_cookie(
            self.cookie_name,
            token,
            max_age=max(0, max_age),
            path="/",
            secure=self._secure,
            httponly=True,
            samesite="Lax",
        )

    def _consent_page(self, parsed: _Parsed, scopes: Sequence[str], csrf: str) -> web.Response:
        client = parsed.client
        redirect_host = urlsplit(parsed.request.redirect_uri).netloc
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, values in parsed.params.items()
            for value in values
        )
        scope_items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in scopes) or (
            "<li>no particular permissions</li>"
        )
        body = (
            f"<h1>Allow {html.escape(client.display_name)}?</h1>"
            f"<p><strong>{html.escape(client.display_name)}</strong> "
            f"(returning to <code>{html.escape(redirect_host)}</code>) asks to act for you "
            "with these permissions:</p>"
            f"<ul>{scope_items}</ul>"
            '<form method="post" action="/authorize">'
            f"{hidden}"
            f'<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">'
            '<button type="submit" name="decision" value="approve">Allow</button>'
            '<button type="submit" name="decision" value="deny">Deny</button>'
            "</form>"
        )
        return html_response(
            200, "Authorize access", body, form_target=_origin(parsed.request.redirect_uri)
        )

    async def _audit(
        self,
        user: Principal,
        client_id: str,
        action: str,
        outcome: Literal["success", "failure"],
        request_id: str,
        attributes: Mapping[str, str],
    ) -> None:
        async with self._store.transaction() as tx:
            await tx.audit(
                AuditRecord(
                    actor=user.chitty_id,
                    subject=user.chitty_id,
                    action=action,
                    outcome=outcome,
                    resource=client_id[:MAX_CLIENT_ID_LENGTH],
                    request_id=request_id,
                    attributes=dict(attributes),
                )
            )


def _stub_request(client: ClientRecord, redirect_uri: str, state: str) -> AuthorizationRequest:
    return AuthorizationRequest("", client.client_id, redirect_uri, (), state, "", "")


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _is_authorize_path(target: str) -> bool:
    """A same-origin path to /authorize (so ``return_to`` cannot redirect anywhere else)."""
    if not target or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc and parts.path == "/authorize"
