"""The HTTP caller's address on a transcoded call, in metadata only the shim can vouch for.

The HTTP shim calls gRPC over its own channel, so every transcoded call arrives from the shim's
address (127.0.0.1). To charge rate limits to the real caller, the shim adds two metadata keys:
``x-chittyauth-peer`` (the caller's true address, ``X-Forwarded-For`` already resolved) and
``x-chittyauth-shim`` (a random secret of this deployment's processes). gRPC believes the
address only with the right secret, compared in constant time; a caller that sets the same keys
itself cannot know the secret, so its keys are ignored and its own peer address counts.

The secret is made once per process; ``serve --workers N`` makes one for all its workers
(``CHITTYAUTH_SHIM_SECRET``), because a worker's shim may reach another worker's gRPC server
over the shared port. It never leaves the machine: the shim's channel is to its own port.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable
from typing import Any

PEER_KEY = "x-chittyauth-peer"
PROOF_KEY = "x-chittyauth-shim"
SECRET_ENV = "CHITTYAUTH_SHIM_SECRET"
# The keys the shim sets itself: never copied from an HTTP request.
RESERVED_KEYS = frozenset({PEER_KEY, PROOF_KEY})
_MIN_SECRET_CHARS = 32


def _process_secret() -> str:
    inherited = os.environ.get(SECRET_ENV, "")
    return inherited if len(inherited) >= _MIN_SECRET_CHARS else secrets.token_urlsafe(32)


_SECRET = _process_secret()


def new_secret() -> str:
    """A fresh secret for ``serve --workers N`` to hand its workers."""
    return secrets.token_urlsafe(32)


def forwarded_metadata(address: str) -> list[tuple[str, str]]:
    """The metadata the shim adds to a transcoded call for a caller at ``address``."""
    if not address:
        return []
    return [(PEER_KEY, address), (PROOF_KEY, _SECRET)]


def vouched_address(metadata: Iterable[tuple[str, Any]]) -> str:
    """The caller's address the shim vouched for, or '' (no proof, a wrong proof, no address).

    A key given twice is not believed: the shim sends each once.
    """
    peer: list[str] = []
    proof: list[str] = []
    for key, value in metadata:
        if key == PEER_KEY and isinstance(value, str):
            peer.append(value)
        elif key == PROOF_KEY and isinstance(value, str):
            proof.append(value)
    if len(peer) != 1 or len(proof) != 1:
        return ""
    if not hmac.compare_digest(proof[0].encode("utf-8", "replace"), _SECRET.encode("utf-8")):
        return ""
    try:
        return str(ipaddress.ip_address(peer[0]))
    except ValueError:
        return ""
