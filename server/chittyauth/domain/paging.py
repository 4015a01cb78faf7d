"""Keyset paging shared by every List RPC: page sizes and opaque page tokens.

A page token is base64url of a JSON array: the listing's scope (the filter values it was made
for, so a token from one listing is not accepted by another) followed by the position of the
last item sent — a sort number (creation time, or a sequence number) and a tie-breaking id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from chittyauth.domain.errors import InvalidRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_PAGE_TOKEN_CHARS = 1024

Scope = Sequence[str | bool | int]


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """The page size to use: ``default`` for 0, at most ``maximum``; negative is refused."""
    if requested < 0:
        raise InvalidRequest("page_size must not be negative", reason="INVALID_PAGE_SIZE")
    return min(requested or default, maximum)


def encode_page_token(sort_key: float, item_id: str, scope: Scope = ()) -> str:
    """The token for the position after (``sort_key``, ``item_id``) in the listing ``scope``."""
    raw = json.dumps([*scope, sort_key, item_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, scope: Scope = ()) -> tuple[float, str] | None:
    """The position in ``token`` (None for ''), which must have been made for ``scope``.

    Raises:
        InvalidRequest: reason ``INVALID_PAGE_TOKEN`` for anything this service did not issue
            for this listing.
    """
    if not token:
        return None
    bad = InvalidRequest("page_token is not valid for this query", reason="INVALID_PAGE_TOKEN")
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(value, list) or len(value) != len(scope) + 2:
        raise bad
    *made_for, sort_key, item_id = value
    # `==` alone would let True stand for 1: compare types too.
    if [(type(v), v) for v in made_for] != [(type(v), v) for v in scope]:
        raise bad
    if not isinstance(sort_key, int | float) or isinstance(sort_key, bool):
        raise bad
    if not isinstance(item_id, str):
        raise bad
    return float(sort_key), item_id
