"""The agent's side of the ChittyAuth API: its settings, its client and how refusals look.

The agent calls ChittyAuth through the hand-written ``chitty.auth.client.AsyncAuthClient``
with its own ``ClientCredentials`` (the client fetches and renews the agent's access token);
a refusal, from the service or from a tool's own input check, is a ``ServiceRefusal``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chitty.auth.client import AsyncAuthClient, ChittyAuthError, ClientCredentials

ENV_CLIENT_ID = "CHITTYAUTH_MCP_CLIENT_ID"
ENV_CLIENT_SECRET = "CHITTYAUTH_MCP_CLIENT_SECRET"
ENV_TARGET = "CHITTYAUTH_MCP_TARGET"
DEFAULT_TARGET = "127.0.0.1:50051"
CALL_TIMEOUT_S = 15.0


class AgentConfigError(Exception):
    """The agent's environment is incomplete."""


@dataclass(frozen=True)
class AgentSettings:
    """Where the service is and who the agent is."""

    target: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"AgentSettings(target={self.target!r}, client_id={self.client_id!r}, ***)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Reads the agent's settings from the environment.

        Raises:
            AgentConfigError: the client id or secret is missing.
        """
        source = os.environ if env is None else env
        client_id = source.get(ENV_CLIENT_ID, "").strip()
        client_secret = source.get(ENV_CLIENT_SECRET, "")
        if not client_id or not client_secret:
            raise AgentConfigError(f"{ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} must be set")
        target = source.get(ENV_TARGET, "").strip() or DEFAULT_TARGET
        return cls(target=target, client_id=client_id, client_secret=client_secret)

    def open_client(self) -> AsyncAuthClient:
        """A client that authenticates as the agent (client_credentials, renewed early)."""
        return AsyncAuthClient(
            self.target,
            ClientCredentials(self.client_id, self.client_secret),
            timeout_s=CALL_TIMEOUT_S,
        )


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
]
