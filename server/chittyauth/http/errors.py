"""The one place that renders errors as HTTP responses, in the shape each route speaks.

- OAuth routes (``/token``, ``/introspect``, ``/revoke``): RFC 6749 §5.2 JSON
  ``{"error", "error_description"}`` with ``Cache-Control: no-store``; 400 unless the error
  says otherwise (401 ``invalid_client`` / ``invalid_token`` with a ``WWW-Authenticate``
  challenge, 403 ``insufficient_scope``, 429, 503, and the transport refusals 405/413/415).
- Every other route: google.rpc.Status JSON, exactly as the transcoder answers (the details
  come from ``rpc/errors.status_for``, the HTTP status from the error).
- The legacy validate routes: their historical ``{"valid": false, "error"}`` shape.

Also here: the shim's own transport refusals (body too large, wrong content type, method not
allowed) as domain errors, so a handler can raise them like any other refusal, the bounded
body reader that raises them, and the one JSON parser of request bodies (bounded in depth).
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from chittyauth.domain.errors import (
    DomainError,
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
)
from chittyauth.http import status as rpc_http
from chittyauth.rpc.errors import status_for

JSON_CONTENT_TYPE = "application/json"
# RFC 6749 §5.1: token and error responses must not be cached.
NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REALM = "chittyauth"
MAX_DESCRIPTION_LENGTH = 500
# Statuses an OAuth error keeps; any other refusal is 400, as RFC 6749 §5.2 asks.
_OAUTH_KEPT_STATUSES = frozenset({401, 403, 405, 413, 415, 429, 503})
_INTERNAL_CODE = 13  # google.rpc.Code.INTERNAL
# How deep a request body's arrays and objects may nest. No route reads anything near this;
# it keeps a body's JSON within what protobuf decodes (100 levels, two per Struct level)
# once it is a message on its way to the gRPC side.
MAX_JSON_DEPTH = 32

# The request id the app's middleware assigns to every request (echoed as X-Request-Id).
REQUEST_ID: web.RequestKey[str] = web.RequestKey("chittyauth_request_id", str)


# The caller's true address when ``[http] trusted_proxies`` made it differ from the TCP peer
# (set by the app's middleware; see ``domain.ratelimit.source_address``).
SOURCE_ADDRESS: web.RequestKey[str] = web.RequestKey("chittyauth_source_address", str)


def request_id_of(request: web.Request) -> str:
    """The request id of ``request`` ('' outside the app's middleware)."""
    value = request.get(REQUEST_ID)
    return value if isinstance(value, str) else ""


def source_address_of(request: web.Request) -> str:
    """The address the request really comes from: the TCP peer, or the caller behind a
    trusted proxy (``X-Forwarded-For``); what rate limits are charged to."""
    value = request.get(SOURCE_ADDRESS)
    return value if isinstance(value, str) and value else request.remote or ""


class ErrorStyle(enum.Enum):
    """How a route renders its errors."""

    STATUS = "status"  # google.rpc.Status JSON (transcoded and plain JSON routes)
    OAUTH = "oauth"  # RFC 6749 §5.2
    LEGACY = "legacy"  # {"valid": false, "error"} of the historical validate routes
    LEGACY_SUCCESS = "legacy_success"  # {"success": false, "error"} of the other old routes


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than ``[http] max_body_bytes`` (HTTP 413)."""

    reason = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UnsupportedMediaType(InvalidRequest):
    """The request body is not of the content type the route reads (HTTP 415)."""

    reason = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class MalformedJson(InvalidRequest):
    """The request body is not JSON (RFC 8259: no NaN or Infinity either)."""

    reason = "MALFORMED_JSON"


class JsonTooDeep(InvalidRequest):
    """The request body's arrays and objects nest deeper than ``MAX_JSON_DEPTH``."""

    reason = "JSON_TOO_DEEP"


class MethodNotAllowed(InvalidRequest):
    """The route exists but not for this HTTP method (HTTP 405 with ``Allow``)."""

    grpc_code = "UNIMPLEMENTED"
    reason = "METHOD_NOT_ALLOWED"
    http_status = 405

    def __init__(self, method: str, path: str, allow: str) -> None:
        super().__init__(f"{method[:16]} is not allowed on {path[:200]}; allowed: {allow}")
        self.allow = allow


def render(error: DomainError, style: ErrorStyle, *, auth_scheme: str = "") -> web.Response:
    """The response for a refusal, in the route's style.

    Args:
        error: What the handler (or the domain below it) refused.
        style: The route's error style.
        auth_scheme: ``basic``, ``bearer`` or ``""``: how the caller tried to authenticate;
            chooses the ``WWW-Authenticate`` challenge of an OAuth 401.
    """
    if style is ErrorStyle.OAUTH:
        response = oauth_error(error, auth_scheme=auth_scheme)
    elif style is ErrorStyle.LEGACY:
        response = json_response(
            {"valid": False, "error": error.message, "reason": error.reason},
            status=error.http_status,
        )
    elif style is ErrorStyle.LEGACY_SUCCESS:
        response = json_response(
            {"success": False, "error": error.message, "reason": error.reason},
            status=error.http_status,
        )
    else:
        _, status = status_for(error)
        response = json_response(rpc_http.status_json(status), status=error.http_status)
    if isinstance(error, MethodNotAllowed):
        response.headers["Allow"] = error.allow
    if error.retry_after is not None and error.retry_after >= 0:
        # Whole seconds, rounded up so a client never retries early.
        response.headers["Retry-After"] = str(math.ceil(error.retry_after))
    return response


def oauth_error(error: DomainError, *, auth_scheme: str = "") -> web.Response:
    """RFC 6749 §5.2 error JSON; RFC 6750 §3 codes when a bearer token was refused."""
    code = error.oauth_error
    status = error.http_status if error.http_status in _OAUTH_KEPT_STATUSES else 400
    description = oauth_description(error.message)
    headers = dict(NO_STORE)
    if auth_scheme == "bearer" and isinstance(error, Unauthenticated | PermissionDenied):
        code = "invalid_token" if isinstance(error, Unauthenticated) else "insufficient_scope"
        headers["WWW-Authenticate"] = (
            f'Bearer realm="{REALM}", error="{code}", error_description="{description}"'
        )
    elif status == 401:
        # RFC 6749 §5.2: a client that tried Basic must be told how to authenticate;
        # RFC 7235 §3.1 asks for a challenge on every 401, so the others get it too.
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return json_response(
        {"error": code, "error_description": description}, status=status, headers=headers
    )


def oauth_description(message: str) -> str:
    """``message`` cut to the characters RFC 6749 §5.2 allows in ``error_description``."""
    allowed = []
    for char in message[:MAX_DESCRIPTION_LENGTH]:
        if char == '"':
            allowed.append("'")
        elif char == "\\" or not 0x20 <= ord(char) <= 0x7E:
            allowed.append("?")
        else:
            allowed.append(char)
    return "".join(allowed)


def internal_error(style: ErrorStyle, request_id: str) -> web.Response:
    """500 that says nothing but the request id (the details are in the log)."""
    message = f"internal error (request id {request_id})"
    if style is ErrorStyle.OAUTH:
        return json_response(
            {"error": "server_error", "error_description": message},
            status=500,
            headers=NO_STORE,
        )
    if style is ErrorStyle.LEGACY:
        return json_response({"valid": False, "error": message}, status=500)
    if style is ErrorStyle.LEGACY_SUCCESS:
        return json_response({"success": False, "error": message}, status=500)
    return json_response({"code": _INTERNAL_CODE, "message": message, "details": []}, status=500)


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Compact UTF-8 JSON."""
    # "replace": a header byte that is not UTF-8 (a surrogate in aiohttp's str) that found its
    # way into a message becomes "?" rather than failing the response.
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"),
        status=status,
        content_type=JSON_CONTENT_TYPE,
        headers=dict(headers or {}),
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, refusing one larger than ``limit`` bytes before reading it all.

    Raises:
        PayloadTooLarge: by ``Content-Length`` or while reading a chunked body.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return bytes(body)


def header_text(value: str, limit: int = 100) -> str:
    """A header value fit to quote in a message: printable ASCII, at most ``limit`` characters.

    aiohttp decodes header bytes as UTF-8 with surrogates for the bytes that are not; those,
    like every other non-printable or non-ASCII character, become ``?``.
    """
    return "".join(c if " " <= c <= "~" else "?" for c in value[:limit])


def require_content_type(request: web.Request, expected: str) -> None:
    """Refuses a body that is not ``expected`` in UTF-8 (the charset may be omitted).

    Raises:
        UnsupportedMediaType: naming what was sent.
    """
    charset = (request.charset or "utf-8").lower()
    if request.content_type != expected or charset not in ("utf-8", "utf8"):
        sent = header_text(request.headers.get("Content-Type", "no content type"))
        raise UnsupportedMediaType(f"request body must be {expected} (UTF-8), not {sent}")


def parse_json(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request body as JSON, refused when it is not JSON or nests deeper than ``max_depth``.

    Every route that reads a JSON body parses it here. The parser itself stops at Python's
    recursion limit (about 1,000 levels) with a RecursionError; anything that parses is then
    measured without recursion, so no later step (json_format, protobuf) meets a nesting it
    cannot take.

    Raises:
        MalformedJson: not UTF-8, not JSON, or a NaN / Infinity literal.
        JsonTooDeep: nested deeper than ``max_depth``.
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonTooDeep(f"request body nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise MalformedJson(f"request body is not valid JSON: {exc}"[:200]) from None
    # Counting brackets first spares every ordinary body the scan.
    if body.count(b"[") + body.count(b"{") > max_depth and json_depth(body) > max_depth:
        raise JsonTooDeep(f"request body nests deeper than {max_depth} levels")
    return value


# A JSON string, escapes included (unrolled, so long strings cost no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of valid JSON ``body`` nest (0 for a scalar).

    Loops in C only: strings are cut out by a regex, the brackets left are summed by
    ``itertools.accumulate`` (half the time ``json.loads`` took over the same body).
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
