"""What the interceptor learns about a call, available to servicers through a contextvar."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from chittyauth.domain.principal import Principal
from chittyauth.rpc.forwarded import vouched_address


class CallInfo(NamedTuple):
    """The parts of a call that servicers and the domain need.

    ``bearer`` is the raw credential from ``authorization: Bearer …``; it is checked lazily by
    whichever servicer needs a principal, so calls that need none (Validate) pay nothing. The
    peer address is read from the call only when asked for (rate limits, audit). A named
    tuple: one is built for every call, and a tuple is the cheapest immutable record.
    """

    method: str
    request_id: str
    bearer: str
    # (key, value) pairs as received; values of ``-bin`` keys are bytes and never matched.
    metadata: Iterable[tuple[str, Any]]
    read_peer: Callable[[], str | None]
    # The caller, resolved and admitted by the policy gate before the handler ran; None for
    # operations any caller may call (Authenticate, Validate …), which check what they need.
    principal: Principal | None = None

    @property
    def peer(self) -> str:
        """The gRPC peer string (``ipv4:127.0.0.1:5555``), or ''."""
        return self.read_peer() or ""

    def header(self, name: str) -> str:
        """The first text value of a metadata key (lowercase), or ''."""
        for key, value in self.metadata:
            if key == name and isinstance(value, str):
                return value
        return ""

    @property
    def client_address(self) -> str:
        """The caller's true IP address: for a call transcoded by our own HTTP shim, the HTTP
        caller's (vouched for by the shim's secret, ``rpc/forwarded.py``); otherwise the gRPC
        peer's, from the peer string (``ipv4:127.0.0.1:5555``)."""
        vouched = vouched_address(self.metadata)
        if vouched:
            return vouched
        kind, _, rest = self.peer.partition(":")
        if kind == "ipv4":
            return rest.rsplit(":", 1)[0]
        if kind == "ipv6":
            return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
        return self.peer


call_var: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("call")


def current_call() -> CallInfo:
    """The current call (set by the interceptor for every RPC)."""
    return call_var.get()
