"""The ChittyAuth MCP agent (``chittyauth mcp``): 11 identity tools over the official SDK."""

from __future__ import annotations

from chittyauth.mcp.agent import Agent, build_server, run_http, run_stdio, tool_list
from chittyauth.mcp.service import AgentConfigError, AgentSettings, ServiceRefusal

__all__ = [
    "Agent",
    "AgentConfigError",
    "AgentSettings",
    "ServiceRefusal",
    "build_server",
    "run_http",
    "run_stdio",
    "tool_list",
]
