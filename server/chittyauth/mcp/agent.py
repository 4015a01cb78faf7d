"""The ChittyAuth MCP agent: the 11 historical tools over the official ``mcp`` SDK.

Run by ``chittyauth mcp`` over stdio (default) or streamable HTTP (``--http``). Each tool call
is one or two ChittyAuth RPCs made through ``chitty.auth.client.AsyncAuthClient``; a refusal by
the service becomes a tool error naming the gRPC status and the ErrorInfo reason.

Whose authority a call carries is ``policy.mcp_tool_authority``'s decision: over stdio the
operator's (the agent's own client credentials); over HTTP the caller's. The HTTP endpoint is a
protected resource (RFC 9728, ``chitty.auth.client.resource``): a request without an active
access token for the agent's resource URL is answered 401 with
``WWW-Authenticate: Bearer resource_metadata="…"``, and each tool call forwards the caller's
token to ChittyAuth as its call credential. The HTTP agent holds no credentials of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs ship with it
import mcp_types as types
from mcp.server import Server as McpServer
from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from chitty.auth.client import AsyncAuthClient, ChittyAuthError
from chitty.auth.client.resource import (
    TOKEN_KEY,
    AsgiApp,
    AsgiProtection,
    Receive,
    ResourceProtector,
    Scope,
    Send,
)
from chitty.auth.client.verifier import TokenRejected, VerifiedToken
from chitty.auth.v1 import auth_service_pb2, token_pb2
from chittyauth import __version__
from chittyauth.domain import policy
from chittyauth.mcp.schemas import TOOL_SCHEMAS
from chittyauth.mcp.service import MCP_PATH, AgentSettings, ServiceRefusal, as_caller
from chittyauth.mcp.tools import Call, Tools

log = logging.getLogger("chittyauth.mcp")

# Where the HTTP agent leaves the verified caller for the tool handlers (the ASGI scope state).
CALLER_KEY = "chittyauth.mcp.caller"

TOOL_DESCRIPTIONS: dict[str, str] = {
    "generate_api_key": "Create an API key (sk_live_...) owned by a ChittyID; the key is shown"
    " once. Returns key_id, api_key, chitty_id, scopes and created_at.",
    "validate_api_key": "Tell whether an API key is valid now, and why not; returns its"
    " ChittyID, scopes and expiry.",
    "check_permission": "Tell whether a ChittyID holds a permission (on a resource).",
    "generate_jwt": "Issue an access token for a ChittyID (checked with the ChittyID"
    " authority), with an optional lifetime and extra claims.",
    "validate_jwt": "Verify an access token (signature, issuer, expiry, revocation) and"
    " return its claims.",
    "grant_authorization": "Grant a permission from one ChittyID to another; returns the"
    " authorization id.",
    "list_sessions": "List a ChittyID's sessions (devices and MCP servers), newest first.",
    "mcp_portal_authenticate": "Sign a person in with a Cloudflare Access assertion; returns"
    " the ChittyID, a portal token and the MCP portal URL.",
    "create_linked_app_oauth": "Approve a linked app for the person whose token is given;"
    " returns a single-use authorization code.",
    "exchange_oauth_tokens": "Exchange an authorization code (or a refresh token) for the"
    " linked app's access and refresh tokens.",
    "validate_mcp_token": "Tell whether a token is an active portal, MCP server or linked-app"
    " token, with its ChittyID, server id and capabilities.",
}


def tool_list() -> list[types.Tool]:
    """The 11 tools, with their input schemas."""
    return [
        types.Tool(name=name, description=TOOL_DESCRIPTIONS[name], input_schema=schema)
        for name, schema in TOOL_SCHEMAS.items()
    ]


def refusal_result(refusal: ServiceRefusal) -> types.CallToolResult:
    """A tool error naming the status and reason (never a secret: messages are the service's)."""
    error = {"code": refusal.code, "reason": refusal.reason, "message": refusal.message}
    if refusal.metadata:
        error["metadata"] = refusal.metadata  # type: ignore[assignment]
    text = f"ChittyAuth refused: {refusal.code} ({refusal.reason}): {refusal.message}"
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"error": error},
        is_error=True,
    )


def success_result(name: str, result: dict[str, Any]) -> types.CallToolResult:
    """The structured result and the same as readable JSON text."""
    text = f"{name}: " + json.dumps(result, indent=2, sort_keys=True)
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=result, is_error=False
    )


@dataclass(frozen=True)
class Caller:
    """An HTTP caller: its verified token and a key naming who it is (issuer, client, subject)."""

    token: str = field(repr=False)
    key: str


class Agent:
    """Dispatches tool calls to the handlers, validating input against each tool's schema.

    ``client`` is the operator's (stdio: the agent's own credentials) or, over HTTP, one with
    no credentials that only owns the channel the callers' calls share.
    """

    def __init__(
        self, client: AsyncAuthClient, transport: policy.McpTransport = policy.McpTransport.STDIO
    ) -> None:
        self.client = client
        self.transport = transport
        self.tools = Tools()
        self._validators = {
            name: jsonschema.Draft202012Validator(schema) for name, schema in TOOL_SCHEMAS.items()
        }

    def _call_for(self, caller: Caller | None) -> Call | None:
        authority = policy.mcp_tool_authority(self.transport, caller.token if caller else "")
        if authority is policy.McpAuthority.OPERATOR:
            return Call(self.client)
        if authority is policy.McpAuthority.CALLER and caller is not None:
            return Call(as_caller(self.client, caller.token), caller.key)
        return None

    async def call(
        self, name: str, arguments: dict[str, Any] | None, caller: Caller | None = None
    ) -> types.CallToolResult:
        """Runs one tool; every failure is a tool error, never an exception."""
        call = self._call_for(caller)
        if call is None:
            return refusal_result(
                ServiceRefusal(
                    "UNAUTHENTICATED", "MISSING_CREDENTIALS", "this call needs a bearer token"
                )
            )
        handler = self.tools.handlers.get(name)
        if handler is None:
            return refusal_result(ServiceRefusal("NOT_FOUND", "UNKNOWN_TOOL", f"no tool {name}"))
        args = arguments or {}
        problem = next(iter(self._validators[name].iter_errors(args)), None)
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "arguments"
            # The message names the rule, not the value, so a mistyped secret is not echoed.
            return refusal_result(
                ServiceRefusal(
                    "INVALID_ARGUMENT", "INVALID_INPUT", f"{where}: fails '{problem.validator}'"
                )
            )
        try:
            return success_result(name, await handler(call, args))
        except ChittyAuthError as error:
            refusal = ServiceRefusal.from_error(error)
            log.info("tool %s refused: %s %s", name, refusal.code, refusal.reason)
            return refusal_result(refusal)
        except ServiceRefusal as refusal:
            log.info("tool %s refused: %s %s", name, refusal.code, refusal.reason)
            return refusal_result(refusal)
        except Exception:  # a bug must not take the agent down with it
            log.exception("tool %s failed", name)
            return refusal_result(
                ServiceRefusal("INTERNAL", "AGENT_ERROR", "the agent failed to run the tool")
            )


def build_server(
    settings: AgentSettings,
    *,
    transport: policy.McpTransport = policy.McpTransport.STDIO,
    client: AsyncAuthClient | None = None,
) -> McpServer[Agent]:
    """The MCP server. Its lifespan owns the operator's client (stdio), or uses ``client``,
    which the caller owns (HTTP: the credential-less client whose channel calls share)."""

    @asynccontextmanager
    async def lifespan(_: McpServer[Agent]) -> AsyncIterator[Agent]:
        if client is not None:
            yield Agent(client, transport)
            return
        async with settings.open_client() as own:
            yield Agent(own, transport)

    async def list_tools(
        ctx: ServerRequestContext[Agent], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(
        ctx: ServerRequestContext[Agent], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await ctx.lifespan_context.call(
            params.name, params.arguments, caller_of(ctx.request)
        )

    return McpServer(
        "chittyauth",
        version=__version__,
        instructions="ChittyAuth identity tools: API keys, tokens, permissions, sessions and"
        " linked-app OAuth for ChittyIDs.",
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def caller_of(request: Any) -> Caller | None:
    """The verified caller the HTTP middleware left on ``request``'s scope; None over stdio."""
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    caller = (scope.get("state") or {}).get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None


class AgentVerifier:
    """Accepts an active ChittyAuth *access token* whose audience is the agent's resource.

    It asks ChittyAuth (``Validate`` with the audience) on every request, so a revoked token
    stops working at once. An API key is refused here: it names no audience, so it is no token
    for this resource.
    """

    def __init__(self, client: AsyncAuthClient, resource: str) -> None:
        self._client = client
        self._resource = resource

    async def verify(self, token: str, *, required_scopes: Iterable[str] = ()) -> VerifiedToken:
        """Raises TokenRejected (invalid_token / insufficient_scope)."""
        try:
            reply = await self._client.validate(
                auth_service_pb2.ValidateRequest(token=token, audience=self._resource)
            )
        except ChittyAuthError as error:
            log.warning("token check failed: %s %s", error.code.name, error.reason)
            raise TokenRejected("invalid_token", "the token could not be checked") from None
        if not reply.active or reply.credential_kind != token_pb2.CREDENTIAL_KIND_ACCESS_TOKEN:
            raise TokenRejected("invalid_token", "not an active access token for this resource")
        claims = reply.claims
        missing = [s for s in required_scopes if s and s not in claims.scopes]
        if missing:
            raise TokenRejected("insufficient_scope", f"requires scope {' '.join(missing)}")
        return VerifiedToken(
            {
                "iss": claims.iss,
                "sub": claims.sub,
                "client_id": claims.client_id,
                "chitty_id": claims.chitty_id,
                "scope": " ".join(claims.scopes),
                "jti": claims.jti,
                "sid": claims.sid,
            }
        )


class _RecordCaller:
    """After ``AsgiProtection`` has verified the bearer token: leaves the caller (token and
    who) for the tool handlers, and tells the SDK who opened the MCP session, so a session can
    be used only by the principal that opened it."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state") or {}
        verified = state.get(TOKEN_KEY)
        token = _bearer_of(scope)
        if scope["type"] == "http" and isinstance(verified, VerifiedToken) and token:
            claims = verified.claims
            key = "\x00".join((str(claims.get("iss", "")), verified.client_id, verified.subject))
            state[CALLER_KEY] = Caller(token, key)
            scope["user"] = AuthenticatedUser(
                AccessToken(
                    token=token,
                    client_id=verified.client_id,
                    scopes=sorted(verified.scopes),
                    subject=verified.subject,
                    claims={"iss": claims.get("iss", "")},
                )
            )
        await self.app(scope, receive, send)


def _bearer_of(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def protected_app(
    settings: AgentSettings, client: AsyncAuthClient, host: str
) -> tuple[McpServer[Agent], AsgiApp]:
    """The MCP server and its HTTP app behind the resource-server middleware."""
    server = build_server(settings, transport=policy.McpTransport.HTTP, client=client)
    app = server.streamable_http_app(host=host, streamable_http_path=MCP_PATH)
    protector = ResourceProtector(
        verifier=AgentVerifier(client, settings.resource),
        resource=settings.resource,
        authorization_servers=[settings.issuer],
        routes={"/": policy.MCP_HTTP_SCOPES},
        realm="chittyauth-mcp",
    )
    return server, AsgiProtection(_RecordCaller(app), protector)


async def run_stdio(settings: AgentSettings) -> int:
    """Serves MCP over stdin/stdout until the host closes them, as the operator."""
    from mcp.server.stdio import stdio_server

    server = build_server(settings)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
    return 0


async def run_http(settings: AgentSettings, host: str, port: int) -> int:
    """Serves MCP over streamable HTTP at http://host:port/mcp, as each caller."""
    import uvicorn

    async with settings.open_anonymous_client() as client:
        _, app = protected_app(settings, client, host)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve()
    return 0
