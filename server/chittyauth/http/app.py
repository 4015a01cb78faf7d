"""The HTTP side of the server: one aiohttp application, served in the same process.

Routes, most specific first; the transcoder answers everything else:

- ``/healthz`` (alive), ``/readyz`` (ready: see ``chittyauth.app.Readiness``), ``/metrics``,
  ``/openapi.json``, ``/jwks.json`` (and ``/.well-known/jwks.json``),
  ``/.well-known/oauth-authorization-server``
- the OAuth endpoints ``/token``, ``/introspect``, ``/revoke`` (``http/oauth.py``),
  ``/authorize`` and ``/portal/login`` (``http/authorize.py``), ``/register``
  (``http/register.py``)
- the legacy routes ``/v1/tokens/validate``, ``/v1/api-keys/validate``, ``/health``
  (``http/legacy.py``)
- ``/{tail}``: the google.api.http transcoder, over a channel to our own gRPC port.

One middleware does what every route needs: the caller's true source address (the TCP peer,
or the client behind a ``[http] trusted_proxies`` proxy by ``X-Forwarded-For``), a request id
(the caller's ``X-Request-Id`` when it is usable, else a fresh one, forwarded to gRPC and echoed
on the response), the body size limit, metrics, rendering refusals in the route's style
(``http/errors.py``), and turning an unexpected exception into a 500 that shows only the
request id. CORS headers come from ``[http] cors_origins`` only (the transcoder adds the same
ones to its own responses).
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from grpc import aio
from multidict import CIMultiDict

import chittyauth
from chittyauth.clock import Clock, SystemClock
from chittyauth.config import Config
from chittyauth.domain.cimd import ClientMetadataDocuments
from chittyauth.domain.errors import DomainError, Unavailable
from chittyauth.domain.grants import MachineGrants
from chittyauth.domain.oauth import OAuthFlows
from chittyauth.domain.ratelimit import source_address, trusted_networks
from chittyauth.domain.tokens import TokenService
from chittyauth.http.authorize import AuthorizeRoutes, consent_key
from chittyauth.http.errors import (
    REQUEST_ID,
    SOURCE_ADDRESS,
    ErrorStyle,
    MethodNotAllowed,
    PayloadTooLarge,
    internal_error,
    json_response,
    render,
)
from chittyauth.http.legacy import LegacyRoutes
from chittyauth.http.legacy_identity import LegacyIdentityRoutes
from chittyauth.http.metrics import Metrics
from chittyauth.http.oauth import ClientLookup, OAuthEndpoints, authorization_scheme
from chittyauth.http.openapi import build_openapi
from chittyauth.http.register import RegistrationEndpoint
from chittyauth.http.transcoder import Transcoder
from chittyauth.logs import request_id_var
from chittyauth.rpc.health import SERVING
from chittyauth.rpc.services import ALL_SERVICES
from chittyauth.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request it cannot parse (a bad header name, a bad request line) at
    ERROR with a traceback, while it answers 400: anyone could fill the log that way. Such a
    record becomes one INFO line without a traceback; every other record is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else ""
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "malformed HTTP request refused"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.__dict__.update(remote=str(remote), status=exc.code)
        return True


# aiohttp's protocol logger for our server (not the aiohttp.server logger, which other
# aiohttp servers in the process share).
protocol_log = logging.getLogger("chittyauth.http.protocol")
protocol_log.addFilter(_MalformedRequestFilter())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_LENGTH = 128
TRANSCODED_ROUTE = "transcoded"
JWKS_CACHE_CONTROL = "public, max-age=300"
# Request headers a browser may send cross-origin to the routes served here.
CORS_REQUEST_HEADERS = "authorization, content-type, x-request-id"
CORS_MAX_AGE_S = 600


class HealthLike(Protocol):
    def status(self, service: str) -> int: ...


class ReadinessLike(Protocol):
    def checks(self) -> dict[str, str]: ...


class JwksSource(Protocol):
    def jwks(self) -> list[dict[str, str]]: ...


class ServerParts(Protocol):
    """What the shim needs of the server (``chittyauth.app.Server`` once started)."""

    @property
    def config(self) -> Config: ...

    @property
    def grpc_target(self) -> str: ...

    @property
    def health(self) -> HealthLike: ...

    @property
    def store(self) -> SqliteStore: ...

    @property
    def tokens(self) -> TokenService: ...

    @property
    def keys(self) -> JwksSource: ...

    @property
    def grants(self) -> MachineGrants: ...

    @property
    def oauth(self) -> OAuthFlows: ...

    @property
    def metrics(self) -> Metrics: ...

    def readiness(self) -> ReadinessLike: ...


@dataclass(frozen=True)
class _Route:
    path: str
    handlers: Mapping[str, Handler]
    style: ErrorStyle


class HttpShim:
    """Builds the aiohttp application for a server and runs it.

    Args:
        server: The (started) server whose domain objects the routes call. Its client
            registry, ``server.clients``, is looked up per request, so one attached after
            start-up is used as soon as it exists.
    """

    def __init__(self, server: ServerParts) -> None:
        self._server = server
        self._config = server.config
        self._channel: aio.Channel | None = None
        self._runner: web.AppRunner | None = None
        self._styles: dict[str, ErrorStyle] = {}
        self._openapi: bytes | None = None
        self._trusted_proxies = trusted_networks(self._config.http.trusted_proxies)
        # Set when the server starts draining: every response then closes its connection.
        self._draining = False
        # Cleared when the server stops accepting: a new request is then answered 503.
        self._accepting = True
        # When (time.monotonic()) the last request was refused that way.
        self.last_refusal = 0.0
        self.app: web.Application | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Binds ``host:port`` (0 = ephemeral) and serves; returns the bound port.

        ``reuse_port`` shares the port with the other workers of ``serve --workers N``.

        Raises:
            OSError: the address cannot be bound.
        """
        grpc_config = self._config.grpc
        self._channel = aio.insecure_channel(
            self._server.grpc_target,
            options=[
                ("grpc.max_send_message_length", grpc_config.max_message_bytes),
                ("grpc.max_receive_message_length", grpc_config.max_message_bytes),
            ],
        )
        self.app = self._build(self._channel)
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            logger=protocol_log,
            shutdown_timeout=grpc_config.grace_period_s,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        bound = self._runner.addresses[0]
        log.info("http serving", extra={"http": f"{host}:{bound[1]}"})
        return int(bound[1])

    def begin_drain(self) -> None:
        """Answers ``Connection: close`` from now on, while still serving.

        Clients then leave their keep-alive connections during the drain delay, so none is
        left idle to race a new request against the close when the listener stops.
        """
        self._draining = True

    def stop_accepting(self) -> None:
        """Answers every new request 503 (reason SHUTTING_DOWN), still on an open listener.

        Closing the listener at once would drop requests already sent on connections the
        kernel or aiohttp accepted but no handler had read yet; a 503 is a clear refusal. The
        listener closes in ``stop()``, once callers have gone quiet.
        """
        self._draining = True
        self._accepting = False
        self.last_refusal = time.monotonic()

    async def stop(self) -> None:
        """Stops accepting, lets in-flight requests finish (up to the grace period), closes.

        aiohttp closes the listener and idle connections, then waits for each request in
        progress; the gRPC calls those make are still accepted (see ``rpc.interceptors.Drain``).
        """
        self._draining = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    # -- building -----------------------------------------------------------------------------

    def _build(self, channel: aio.Channel) -> web.Application:
        server = self._server
        http_config = self._config.http
        metrics = server.metrics
        clock: Clock = getattr(server, "clock", None) or SystemClock()
        registry = getattr(server, "clients", None)
        documents = None
        if self._config.oauth.cimd_enabled and registry is not None:
            documents = ClientMetadataDocuments(self._config.oauth, registry, server.store, clock)
        oauth = OAuthEndpoints(
            config=self._config,
            store=server.store,
            tokens=server.tokens,
            grants=server.grants,
            flows=server.oauth,
            clients=self._clients,
            metrics=metrics,
            documents=documents,
            limiter=self._identity,
        )
        authorize = AuthorizeRoutes(
            config=self._config,
            store=server.store,
            tokens=server.tokens,
            flows=server.oauth,
            clients=self._clients_of_flows,
            portal=lambda: getattr(self._identity(), "portal", None),
            limiter=self._identity,
            documents=documents,
            clock=clock,
            csrf_key=consent_key(self._config),
        )
        register = RegistrationEndpoint(
            config=self._config.oauth,
            store=server.store,
            admin=lambda: getattr(self._server, "client_admin", None),
            limiter=self._identity,
        )
        legacy = LegacyRoutes(
            tokens=server.tokens,
            serving=self._serving,
            metrics=metrics,
            max_body_bytes=http_config.max_body_bytes,
        )
        old = LegacyIdentityRoutes(
            server=server,
            tokens=server.tokens,
            clock=clock,
            max_body_bytes=http_config.max_body_bytes,
        )
        status, oauth_style, legacy_style = ErrorStyle.STATUS, ErrorStyle.OAUTH, ErrorStyle.LEGACY
        success_style = ErrorStyle.LEGACY_SUCCESS
        routes = [
            _Route("/healthz", {"GET": self._healthz}, status),
            _Route("/readyz", {"GET": self._readyz}, status),
            _Route("/metrics", {"GET": self._metrics}, status),
            _Route("/openapi.json", {"GET": self._openapi_json}, status),
            _Route("/jwks.json", {"GET": self._jwks}, status),
            _Route("/.well-known/jwks.json", {"GET": self._jwks}, status),
            _Route(
                "/.well-known/oauth-authorization-server", {"GET": oauth.metadata_handler}, status
            ),
            _Route("/token", {"POST": oauth.token}, oauth_style),
            _Route("/introspect", {"POST": oauth.introspect}, oauth_style),
            _Route("/revoke", {"POST": oauth.revoke}, oauth_style),
            _Route(
                "/authorize",
                {"GET": authorize.authorize_get, "POST": authorize.authorize_post},
                status,
            ),
            _Route("/portal/login", {"POST": authorize.portal_login}, status),
            _Route("/register", {"POST": register.register}, oauth_style),
            _Route("/v1/tokens/validate", {"POST": legacy.validate_token}, legacy_style),
            _Route("/v1/api-keys/validate", {"POST": legacy.validate_api_key}, legacy_style),
            _Route("/health", {"GET": legacy.health}, status),
            _Route("/v1/mcp/portal/authenticate", {"POST": old.portal_authenticate}, success_style),
            _Route("/v1/mcp/linked-app/oauth", {"POST": old.linked_app_oauth}, success_style),
            _Route("/v1/mcp/linked-app/token", {"POST": old.linked_app_token}, oauth_style),
            _Route("/v1/mcp/authenticate", {"POST": old.mcp_authenticate}, success_style),
            _Route("/v1/mcp/validate", {"POST": old.mcp_validate}, legacy_style),
            _Route("/v1/tokens/generate", {"POST": old.generate_token}, success_style),
            _Route("/v1/api-keys/generate", {"POST": old.generate_api_key}, success_style),
            _Route("/v1/authorizations/grant", {"POST": old.grant_authorization}, success_style),
            _Route("/v1/authorizations/check", {"POST": old.check_authorization}, success_style),
            _Route(
                "/v1/authorizations/{chitty_id}", {"GET": old.list_authorizations}, success_style
            ),
            _Route("/v1/auth/register", {"POST": old.register}, success_style),
            _Route("/v1/auth/login", {"POST": old.login}, success_style),
            _Route("/v1/auth/validate", {"POST": old.validate_session}, legacy_style),
            _Route("/v1/auth/logout", {"POST": old.logout}, success_style),
        ]
        app = web.Application(middlewares=[self._edge], client_max_size=http_config.max_body_bytes)
        app.on_response_prepare.append(self._add_headers)
        for route in routes:
            self._add(app, route)
        transcoder = Transcoder([spec.descriptor for spec in ALL_SERVICES], channel, http_config)
        # Last, so every route above wins over the catch-all.
        app.router.add_route("*", "/{tail:.*}", transcoder)
        return app

    def _add(self, app: web.Application, route: _Route) -> None:
        resource = app.router.add_resource(route.path)
        methods = dict(route.handlers)
        if "GET" in methods:
            methods.setdefault("HEAD", methods["GET"])
        for method, handler in methods.items():
            resource.add_route(method, handler)
        allow = ", ".join(sorted(methods))

        async def other_method(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                return self._preflight(request, allow)
            raise MethodNotAllowed(request.method, request.path, allow)

        # Any other method is answered here rather than falling through to the transcoder.
        resource.add_route("*", other_method)
        self._styles[resource.canonical] = route.style

    def _clients(self) -> ClientLookup | None:
        registry: ClientLookup | None = getattr(self._server, "clients", None)
        return registry

    def _clients_of_flows(self) -> Any:
        return getattr(self._server, "clients", None)

    def _identity(self) -> Any:
        # IdentityFlows: portal logins and the rate limiter (built before the shim starts).
        return getattr(self._server, "identity", None)

    def _serving(self) -> bool:
        return bool(self._server.health.status("") == SERVING)

    # -- the middleware -----------------------------------------------------------------------

    @web.middleware
    async def _edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        if not all(value.isascii() for _, value in request.raw_headers):
            request = _with_utf8_headers(request)
        request_id = _usable_request_id(request.headers.get(REQUEST_ID_HEADER, ""))
        request[REQUEST_ID] = request_id
        if self._trusted_proxies:
            request[SOURCE_ADDRESS] = source_address(
                request.remote or "",
                request.headers.getall("X-Forwarded-For", ()),
                self._trusted_proxies,
            )
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else ""
        route_label = canonical if canonical in self._styles else TRANSCODED_ROUTE
        # The transcoder forwards this request id (request[REQUEST_ID]) to the gRPC side in
        # place of the header, so both log the same id, with no clone of the request here.
        style = self._styles.get(canonical, ErrorStyle.STATUS)
        reset = request_id_var.set(request_id)
        status = 500
        try:
            response = await self._answer(request, handler, style, request_id)
            status = response.status
            if self._draining and not response.prepared:
                # Here, not in on_response_prepare: aiohttp picks the Connection header before
                # that hook runs, and a close the client was not told of races its next request.
                response.force_close()
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            request_id_var.reset(reset)
            self._server.metrics.observe_http(
                route_label, request.method, status, time.perf_counter() - started
            )

    async def _answer(
        self, request: web.Request, handler: Handler, style: ErrorStyle, request_id: str
    ) -> web.StreamResponse:
        limit = self._config.http.max_body_bytes
        try:
            if request.content_length is not None and request.content_length > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            if not self._accepting:
                await self._refuse(request)
            return await handler(request)
        except DomainError as refusal:
            return render(refusal, style, auth_scheme=authorization_scheme(request))
        except web.HTTPException:
            raise
        except Exception:  # the last line of defence: log it, show only the request id
            log.exception("unexpected error in HTTP handler", extra={"path": request.path})
            return internal_error(style, request_id)

    async def _refuse(self, request: web.Request) -> None:
        """Refuses a request that arrived after the stop: 503, reason SHUTTING_DOWN.

        The body is read first: answering and closing while the client still writes it would
        reset the connection, and the client would see an error instead of the refusal.
        """
        self.last_refusal = time.monotonic()
        await request.read()
        raise Unavailable(
            "the server is shutting down and did not start this request; retry it",
            reason="SHUTTING_DOWN",
        )

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every response, streams included: the request id and, if allowed, CORS."""
        request_id = request.get(REQUEST_ID, "")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        for name, value in self._cors_headers(request).items():
            response.headers.setdefault(name, value)
        if self._config.http.cors_origins:
            # The answer depends on Origin: a shared cache must not hand one origin's to another.
            response.headers.setdefault("Vary", "Origin")

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        # Same rule as the transcoder: echo a configured origin; never Allow-Credentials,
        # so even a configured "*" cannot hand out credentialed cross-origin access.
        origin = request.headers.get("Origin", "")
        allowed = self._config.http.cors_origins
        if not origin or not (origin in allowed or "*" in allowed):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "X-Request-Id, Retry-After, WWW-Authenticate",
            "Vary": "Origin",
        }

    def _preflight(self, request: web.Request, allow: str) -> web.Response:
        headers = {"Allow": allow}
        if self._cors_headers(request):
            headers["Access-Control-Allow-Methods"] = allow
            headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
            headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        return web.Response(status=204, headers=headers)

    # -- the plain routes ---------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        # Liveness: answering at all is the proof. A full disk or an unreachable authority
        # is for /readyz; restarting the process would not cure either.
        return json_response({"status": "ALIVE"}, headers={"Cache-Control": "no-store"})

    async def _readyz(self, request: web.Request) -> web.Response:
        # Ready exactly when the overall gRPC health is SERVING (it follows the same checks,
        # and turns NOT_SERVING at shutdown); the checks say which one fails.
        ready = self._serving()
        return json_response(
            {
                "status": "READY" if ready else "NOT_READY",
                "checks": self._server.readiness().checks(),
            },
            status=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._server.metrics.render()
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    async def _openapi_json(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            document = build_openapi(
                [spec.descriptor for spec in ALL_SERVICES],
                title="ChittyAuth",
                version=chittyauth.__version__,
                server_url=self._config.tokens.issuer,
            )
            self._openapi = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return web.Response(
            body=self._openapi,
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        # Keys are published a day before they sign, so a short cache never misses a kid.
        return json_response(
            {"keys": self._server.keys.jwks()}, headers={"Cache-Control": JWKS_CACHE_CONTROL}
        )


def _with_utf8_headers(request: web.Request) -> web.Request:
    """``request`` with each header byte that is not UTF-8 read as U+FFFD.

    aiohttp keeps such bytes as surrogates, which raise wherever a value is encoded again
    (a JWT parser, base64, a log line): a credential header with one would fail as a 500
    instead of as a bad credential. Only a request with a non-ASCII header byte gets here.
    """
    headers = CIMultiDict(
        (name.decode("latin-1"), value.decode("utf-8", "replace"))
        for name, value in request.raw_headers
    )
    return request.clone(headers=headers)


def _usable_request_id(presented: str) -> str:
    """The caller's request id if it is short printable ASCII, else a fresh one."""
    if (
        presented
        and len(presented) <= MAX_REQUEST_ID_LENGTH
        and presented.isascii()
        and presented.isprintable()
    ):
        return presented
    # A process prefix and a counter: unique without a getrandom() call per request.
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)
