"""Who is calling: the verified claims of the caller's bearer credential."""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN_SCOPE = "chittyauth:admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, once its access token (or API key) has been validated."""

    subject: str
    client_id: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    # portal | linked_app | mcp_server | service | exchange | user | api_key
    token_use: str = ""
    session_id: str = ""
    chitty_id: str = ""
    jti: str = ""
    audiences: tuple[str, ...] = ()
    # The party acting for the subject (the ``act.sub`` claim, RFC 8693 §4.1); '' for none.
    actor: str = ""
