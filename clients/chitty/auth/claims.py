"""The RFC 9068 claim rules an access token must meet, shared by Validate and the LocalVerifier.

Pure Python (no grpc), so the server's domain and the client library apply one rule: a token
that Validate calls malformed is one the LocalVerifier refuses too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# RFC 9068 §2.2: the claims every access token carries.
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
_STRING_CLAIMS = ("iss", "sub", "client_id", "jti")
# RFC 7519 §2 NumericDate: a JSON number, never a string (nor a boolean).
DATE_CLAIMS = ("exp", "iat", "nbf")


def claims_problem(claims: Mapping[str, Any]) -> str:
    """What makes ``claims`` no RFC 9068 access token, "" when nothing: a required claim
    missing or empty, or a date claim that is not a finite number (a string ``exp`` is not)."""
    for name in REQUIRED_CLAIMS:
        if claims.get(name) in (None, "", []):
            return f"{name} is required"
    for name in _STRING_CLAIMS:
        if not isinstance(claims[name], str):
            return f"{name} must be a string"
    aud = claims["aud"]
    if not isinstance(aud, str) and not (
        isinstance(aud, list) and all(isinstance(a, str) and a for a in aud)
    ):
        return "aud must be a string or a list of strings"
    for name in DATE_CLAIMS:
        if name in claims and not is_numeric_date(claims[name]):
            return f"{name} must be a number"
    return ""


def is_numeric_date(value: Any) -> bool:
    """A finite JSON number (``True`` is not one, nor NaN, which would never expire)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
