"""The ChittyAuth MCP agent: the 11 historical tools over the official ``mcp`` SDK.

Run by ``chittyauth mcp`` over stdio (default) or streamable HTTP (``--http``). Each tool call
is one or two ChittyAuth RPCs made through ``chitty.auth.client.AsyncAuthClient`` with the
agent's own client credentials; a refusal by the service becomes a tool error naming the gRPC
status and the ErrorInfo reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs ship with it
import mcp_types as types
from mcp.server import Server as McpServer
from mcp.server import ServerRequestContext

from chitty.auth.client import AsyncAuthClient, ChittyAuthError
from chittyauth import __version__
from chittyauth.mcp.schemas import TOOL_SCHEMAS
from chittyauth.mcp.service import AgentSettings, ServiceRefusal
from chittyauth.mcp.tools import Tools

log = logging.getLogger("chittyauth.mcp")

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


class Agent:
    """Dispatches tool calls to the handlers, validating input against each tool's schema."""

    def __init__(self, client: AsyncAuthClient) -> None:
        self.client = client
        self.tools = Tools(client)
        self._validators = {
            name: jsonschema.Draft202012Validator(schema) for name, schema in TOOL_SCHEMAS.items()
        }

    async def call(self, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        """Runs one tool; every failure is a tool error, never an exception."""
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
            return success_result(name, await handler(args))
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


def build_server(settings: AgentSettings) -> McpServer[Agent]:
    """The MCP server; its lifespan owns the client (and so the gRPC channel)."""

    @asynccontextmanager
    async def lifespan(_: McpServer[Agent]) -> AsyncIterator[Agent]:
        async with settings.open_client() as client:
            yield Agent(client)

    async def list_tools(
        ctx: ServerRequestContext[Agent], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(
        ctx: ServerRequestContext[Agent], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await ctx.lifespan_context.call(params.name, params.arguments)

    return McpServer(
        "chittyauth",
        version=__version__,
        instructions="ChittyAuth identity tools: API keys, tokens, permissions, sessions and"
        " linked-app OAuth for ChittyIDs.",
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def run_stdio(settings: AgentSettings) -> int:
    """Serves MCP over stdin/stdout until the host closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(settings)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
    return 0


async def run_http(settings: AgentSettings, host: str, port: int) -> int:
    """Serves MCP over streamable HTTP at http://host:port/mcp."""
    import uvicorn

    server = build_server(settings)
    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
    return 0
