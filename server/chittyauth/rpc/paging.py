"""Opaque page tokens: base64url of a position, so callers cannot depend on their shape."""

from __future__ import annotations

import base64
import binascii

from chittyauth.domain.errors import InvalidRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    if requested < 0:
        raise InvalidRequest("page_size must not be negative", reason="INVALID_PAGE_SIZE")
    return min(requested or default, maximum)


def encode_token(position: str) -> str:
    return base64.urlsafe_b64encode(f"p1:{position}".encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The position inside a page token ('' for the first page)."""
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("p1:") or len(token) > 512:
        raise InvalidRequest("page_token is not valid", reason="INVALID_PAGE_TOKEN")
    return raw[3:]
