"""Protecting an HTTP resource server with ChittyAuth tokens (RFC 6750, RFC 9728).

It lives with the client, not the server: a resource server installs this package, never the
ChittyAuth service. ``ResourceProtector`` holds the policy (which paths need which scopes) and
the verifier (``LocalVerifier`` offline, or ``RemoteVerifier`` calling Validate);
``aiohttp_middleware`` and ``AsgiProtection`` apply it to an aiohttp app or any ASGI app.

Answers:

- no token: 401 with ``WWW-Authenticate: Bearer realm="…", resource_metadata="…"`` (RFC 9728
  §5.1), and no error code (RFC 6750 §3.1);
- a bad token: 401 ``error="invalid_token"``; too few scopes: 403 ``error="insufficient_scope"``
  with the ``scope`` needed;
- the verifier cannot vouch for revocations (fail closed): 503;
- ``GET /.well-known/oauth-protected-resource[/path]``: the RFC 9728 metadata document.

aiohttp is imported only by ``aiohttp_middleware``, so ASGI users need not install it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from chitty.auth.client.aio import AsyncAuthClient
from chitty.auth.client.verifier import TokenRejected, VerifiedToken, VerifierUnavailable
from chitty.auth.v1 import auth_service_pb2

WELL_KNOWN = "/.well-known/oauth-protected-resource"
TOKEN_KEY = "chittyauth.token"  # where the verified token is left for handlers


class TokenVerifier(Protocol):
    """Anything that verifies a bearer token for this resource."""

    async def verify(self, token: str, *, required_scopes: Iterable[str] = ()) -> VerifiedToken: ...


class RemoteVerifier:
    """Verifies by calling ``Validate`` on every request (no offline state)."""

    def __init__(self, client: AsyncAuthClient, *, audience: str = "") -> None:
        self._client = client
        self._audience = audience
        self.validate_calls = 0

    async def verify(self, token: str, *, required_scopes: Iterable[str] = ()) -> VerifiedToken:
        """Raises TokenRejected (invalid_token / insufficient_scope) like LocalVerifier."""
        self.validate_calls += 1
        reply = await self._client.validate(
            auth_service_pb2.ValidateRequest(token=token, audience=self._audience)
        )
        if not reply.active:
            raise TokenRejected("invalid_token", "the token is not active")
        granted = set(reply.claims.scopes)
        missing = [s for s in required_scopes if s and s not in granted]
        if missing:
            raise TokenRejected("insufficient_scope", f"requires scope {' '.join(missing)}")
        return VerifiedToken(
            {
                "sub": reply.claims.sub,
                "client_id": reply.claims.client_id,
                "scope": " ".join(reply.claims.scopes),
                "jti": reply.claims.jti,
                "sid": reply.claims.sid,
            }
        )


@dataclass(frozen=True)
class HttpAnswer:
    """A refusal or document to send instead of calling the protected handler."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class ResourceProtector:
    """The protection policy of one resource server.

    Args:
        verifier: ``LocalVerifier`` or ``RemoteVerifier``.
        resource: this resource's identifier (an https URL; the tokens' audience).
        authorization_servers: issuer URLs of the authorization servers (ChittyAuth).
        routes: path prefix -> scopes required; the longest matching prefix wins; paths that
            match none are public. The default protects everything with no particular scope.
        scopes_supported: advertised in the metadata (defaults to every scope in ``routes``).
        realm: the ``realm`` of WWW-Authenticate.
    """

    verifier: TokenVerifier
    resource: str
    authorization_servers: Sequence[str]
    routes: Mapping[str, Sequence[str]] = field(default_factory=lambda: {"/": ()})
    scopes_supported: Sequence[str] = ()
    realm: str = "chittyauth"

    @property
    def metadata_path(self) -> str:
        """Where the metadata is served: the well-known prefix before the resource's path."""
        path = urlsplit(self.resource).path.rstrip("/")
        return WELL_KNOWN + path

    @property
    def metadata_url(self) -> str:
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{self.metadata_path}"

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected resource metadata document."""
        scopes = list(self.scopes_supported) or sorted(
            {scope for needed in self.routes.values() for scope in needed}
        )
        return {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
        }

    def required_scopes(self, path: str) -> Sequence[str] | None:
        """Scopes ``path`` needs, or None when it is public."""
        best: str | None = None
        for prefix in self.routes:
            if path.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self.routes[best]

    async def check(
        self, method: str, path: str, authorization: str | None
    ) -> tuple[VerifiedToken | None, HttpAnswer | None]:
        """Decides a request: (token, None) to proceed, (None, answer) to answer instead."""
        if path == self.metadata_path and method in ("GET", "HEAD"):
            body = json.dumps(self.metadata()).encode()
            return None, HttpAnswer(200, {"Content-Type": "application/json"}, body)
        needed = self.required_scopes(path)
        if needed is None:
            return None, None
        token = _bearer(authorization)
        if token is None:
            return None, self._challenge(401, None, "")
        try:
            verified = await self.verifier.verify(token, required_scopes=needed)
        except TokenRejected as rejected:
            status = 403 if rejected.error == "insufficient_scope" else 401
            scope = " ".join(needed) if status == 403 else ""
            return None, self._challenge(status, rejected, scope)
        except VerifierUnavailable:
            body = json.dumps({"error": "temporarily_unavailable"}).encode()
            headers = {"Content-Type": "application/json", "Retry-After": "1"}
            return None, HttpAnswer(503, headers, body)
        return verified, None

    def _challenge(self, status: int, rejected: TokenRejected | None, scope: str) -> HttpAnswer:
        params = [f'realm="{self.realm}"']
        body: dict[str, str] = {}
        if rejected is not None:
            description = rejected.description.replace('"', "'")
            params += [f'error="{rejected.error}"', f'error_description="{description}"']
            body = {"error": rejected.error, "error_description": description}
        if scope:
            params.append(f'scope="{scope}"')
        params.append(f'resource_metadata="{self.metadata_url}"')
        headers = {
            "WWW-Authenticate": "Bearer " + ", ".join(params),
            "Content-Type": "application/json",
        }
        return HttpAnswer(status, headers, json.dumps(body or {"error": "unauthorized"}).encode())


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 16 * 1024:
        return None
    return token.strip()


@functools.cache
def aiohttp_token_key() -> Any:
    """The ``web.RequestKey`` under which the aiohttp middleware leaves the verified token."""
    from aiohttp import web

    return web.RequestKey(TOKEN_KEY, VerifiedToken)


def aiohttp_middleware(protector: ResourceProtector) -> Any:
    """An aiohttp middleware applying ``protector``; handlers find the verified token at
    ``request[aiohttp_token_key()]``."""
    from aiohttp import web

    token_key = aiohttp_token_key()

    @web.middleware
    async def protect(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        verified, answer = await protector.check(
            request.method, request.path, request.headers.get("Authorization")
        )
        if answer is not None:
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        if verified is not None:
            request[token_key] = verified
        return await handler(request)

    return protect


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiProtection:
    """ASGI middleware applying ``protector``; the token is left in
    ``scope["state"]["chittyauth.token"]`` (``request.state`` in Starlette)."""

    def __init__(self, app: AsgiApp, protector: ResourceProtector) -> None:
        self.app = app
        self.protector = protector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = None
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        verified, answer = await self.protector.check(scope["method"], scope["path"], authorization)
        if answer is not None:
            headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
            headers.append((b"content-length", str(len(answer.body)).encode()))
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        if verified is not None:
            scope.setdefault("state", {})[TOKEN_KEY] = verified
        await self.app(scope, receive, send)
