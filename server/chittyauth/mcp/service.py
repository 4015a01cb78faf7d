"""The agent's side of the ChittyAuth API: its settings, its clients and how refusals look.

Whose authority a tool call carries depends on the transport (``policy.mcp_tool_authority``):

- stdio: the operator's. The agent calls with its own ``ClientCredentials`` (the client fetches
  and renews the agent's access token); whoever can start the process holds those already.
- streamable HTTP: the caller's. Each request must carry a bearer token for the agent's
  resource URL (checked by ``chitty.auth.client.resource``), and each tool call forwards that
  token to ChittyAuth as its call credential. The agent has no credentials of its own there.

A refusal, from the service or from a tool's own input check, is a ``ServiceRefusal``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chitty.auth.client import AsyncAuthClient, ChittyAuthError, ClientCredentials, StaticToken

ENV_CLIENT_ID = "CHITTYAUTH_MCP_CLIENT_ID"
ENV_CLIENT_SECRET = "CHITTYAUTH_MCP_CLIENT_SECRET"
ENV_TARGET = "CHITTYAUTH_MCP_TARGET"
ENV_RESOURCE = "CHITTYAUTH_MCP_RESOURCE"
ENV_ISSUER = "CHITTYAUTH_MCP_ISSUER"
DEFAULT_TARGET = "127.0.0.1:50051"
# The service's default issuer (config `[tokens] issuer`): where callers get their tokens.
DEFAULT_ISSUER = "http://127.0.0.1:8080"
MCP_PATH = "/mcp"
CALL_TIMEOUT_S = 15.0


class AgentConfigError(Exception):
    """The agent's environment is incomplete."""


@dataclass(frozen=True)
class AgentSettings:
    """Where the service is and who the agent is (stdio), or which resource it is (HTTP).

    ``client_id``/``client_secret`` are the agent's own credentials, used in stdio mode only;
    ``resource`` is the agent's resource URL (the audience callers' tokens must name) and
    ``issuer`` the authorization server it advertises, used in HTTP mode only.
    """

    target: str
    client_id: str = ""
    client_secret: str = ""
    resource: str = ""
    issuer: str = DEFAULT_ISSUER

    def __repr__(self) -> str:
        return (
            f"AgentSettings(target={self.target!r}, client_id={self.client_id!r}, ***,"
            f" resource={self.resource!r}, issuer={self.issuer!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Reads the stdio agent's settings from the environment.

        Raises:
            AgentConfigError: the client id or secret is missing.
        """
        source = os.environ if env is None else env
        client_id = source.get(ENV_CLIENT_ID, "").strip()
        client_secret = source.get(ENV_CLIENT_SECRET, "")
        if not client_id or not client_secret:
            raise AgentConfigError(f"{ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} must be set")
        return cls(target=_target(source), client_id=client_id, client_secret=client_secret)

    @classmethod
    def http_from_env(
        cls, host: str, port: int, env: Mapping[str, str] | None = None
    ) -> AgentSettings:
        """Reads the HTTP agent's settings; its own client credentials are never read.

        Raises:
            AgentConfigError: the resource URL is not an http(s) URL.
        """
        source = os.environ if env is None else env
        authority = f"[{host}]" if ":" in host else host
        resource = source.get(ENV_RESOURCE, "").strip() or f"http://{authority}:{port}{MCP_PATH}"
        if not resource.startswith(("https://", "http://")) or "#" in resource:
            raise AgentConfigError(f"{ENV_RESOURCE} must be an http(s) URL without a fragment")
        issuer = source.get(ENV_ISSUER, "").strip() or DEFAULT_ISSUER
        return cls(target=_target(source), resource=resource, issuer=issuer)

    def open_client(self) -> AsyncAuthClient:
        """A client that authenticates as the agent (client_credentials, renewed early)."""
        return AsyncAuthClient(
            self.target,
            ClientCredentials(self.client_id, self.client_secret),
            timeout_s=CALL_TIMEOUT_S,
        )

    def open_anonymous_client(self) -> AsyncAuthClient:
        """A client with no credentials: it owns the channel that callers' calls share."""
        return AsyncAuthClient(self.target, None, timeout_s=CALL_TIMEOUT_S)


def as_caller(channel_owner: AsyncAuthClient, token: str) -> AsyncAuthClient:
    """A client on ``channel_owner``'s channel that carries the caller's ``token``."""
    return AsyncAuthClient(
        channel=channel_owner.channel, credentials=StaticToken(token), timeout_s=CALL_TIMEOUT_S
    )


def _target(source: Mapping[str, str]) -> str:
    return source.get(ENV_TARGET, "").strip() or DEFAULT_TARGET


class ServiceRefusal(Exception):
    """A refused call: the gRPC status name, the ErrorInfo reason, message and metadata."""

    def __init__(
        self, code: str, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})

    @classmethod
    def from_error(cls, error: ChittyAuthError) -> ServiceRefusal:
        """The refusal the client library decoded from the service's google.rpc.Status."""
        return cls(error.code.name, error.reason, error.message, error.metadata)


__all__ = [
    "AgentConfigError",
    "AgentSettings",
    "ServiceRefusal",
    "as_caller",
]
