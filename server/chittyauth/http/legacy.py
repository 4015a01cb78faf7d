"""The historical ChittyAuth routes whose behaviour exists today, in their historical shapes.

- ``POST /v1/tokens/validate {token}`` -> 200 ``{valid: true, chitty_id, issued_at,
  expires_at}`` or 401 ``{valid: false, error}``.
- ``POST /v1/api-keys/validate {api_key}`` -> 200 ``{valid: true, chitty_id, scopes,
  expires_at}`` or 401 ``{valid: false, error}``.
- ``GET /health`` -> ``{status: "healthy", service: "chittyauth", version}``.

Both validations are ``TokenService.validate``, the same call the Validate RPC makes; these
handlers only pick the credential kind the route is about and reshape the answer. Times are
RFC 3339 UTC strings, as the transcoded routes write Timestamps. Routes whose behaviour does
not exist yet are not served at all (see ``reference/ORIGINAL.md`` for the full list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

import chittyauth
from chittyauth.domain.errors import InvalidRequest
from chittyauth.domain.tokens import TokenService, Validation
from chittyauth.http.errors import (
    JSON_CONTENT_TYPE,
    json_response,
    parse_json,
    read_body,
    require_content_type,
)
from chittyauth.http.metrics import Metrics

SERVICE_NAME = "chittyauth"

# What a legacy caller is told for each inactive reason of TokenService.validate.
_ERRORS: Mapping[str, str] = {
    "MALFORMED": "token is malformed",
    "EXPIRED": "token has expired",
    "NOT_YET_VALID": "token is not valid yet",
    "REVOKED": "token has been revoked",
    "BAD_SIGNATURE": "token signature is invalid",
    "UNKNOWN_KEY": "token was signed with an unknown key",
    "WRONG_ISSUER": "token was issued by another issuer",
    "WRONG_AUDIENCE": "token is for another audience",
    "INSUFFICIENT_SCOPE": "token lacks a required scope",
    "WRONG_TOKEN_USE": "token is of the wrong kind",
    "UNKNOWN_CREDENTIAL": "credential is not known",
}


class LegacyRoutes:
    """Handlers of the historical routes.

    Args:
        tokens: The token service (validation is in memory).
        serving: Whether the server as a whole is SERVING (for /health).
        metrics: Counts validations by result.
        max_body_bytes: Largest accepted request body.
    """

    def __init__(
        self,
        *,
        tokens: TokenService,
        serving: Callable[[], bool],
        metrics: Metrics,
        max_body_bytes: int,
    ) -> None:
        self._tokens = tokens
        self._serving = serving
        self._metrics = metrics
        self._max_body = max_body_bytes

    async def validate_token(self, request: web.Request) -> web.Response:
        """``POST /v1/tokens/validate``: an access token's ChittyID and lifetime."""
        token = await self._credential(request, "token")
        result = self._tokens.validate(token)
        if result.active and result.kind != "access_token":
            result = Validation(False, "WRONG_TOKEN_USE", {}, result.kind)
        self._metrics.validation(result.active, result.reason)
        if not result.active:
            return invalid_answer(result)
        claims = result.claims
        return json_response(
            {
                "valid": True,
                # A user's token carries chitty_id; a machine's subject is its client id.
                "chitty_id": str(claims.get("chitty_id") or claims.get("sub", "")),
                "issued_at": rfc3339(claims.get("iat")),
                "expires_at": rfc3339(claims.get("exp")),
            }
        )

    async def validate_api_key(self, request: web.Request) -> web.Response:
        """``POST /v1/api-keys/validate``: an API key's ChittyID, scopes and expiry."""
        key = await self._credential(request, "api_key")
        result = self._tokens.validate(key)
        if result.kind != "api_key":
            # An access token is a valid credential, but not an API key.
            result = Validation(False, "UNKNOWN_CREDENTIAL", {}, result.kind)
        self._metrics.validation(result.active, result.reason)
        if not result.active:
            return invalid_answer(result)
        claims = result.claims
        return json_response(
            {
                "valid": True,
                "chitty_id": str(claims.get("chitty_id", "")),
                "scopes": str(claims.get("scope", "")).split(),
                "expires_at": rfc3339(claims.get("exp")),
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: the historical liveness answer (503 while NOT_SERVING)."""
        serving = self._serving()
        return json_response(
            {
                "status": "healthy" if serving else "unhealthy",
                "service": SERVICE_NAME,
                "version": chittyauth.__version__,
            },
            status=200 if serving else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def _credential(self, request: web.Request, name: str) -> str:
        """The string member ``name`` of a JSON object body.

        Raises:
            UnsupportedMediaType, PayloadTooLarge: the body's type or size.
            InvalidRequest: not a JSON object, or ``name`` missing, empty or not a string.
        """
        payload = await read_json_object(request, self._max_body)
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidRequest(
                f"{name} is required and must be a non-empty string",
                reason="MISSING_FIELD",
                metadata={"field": name},
            )
        return value


async def read_json_object(request: web.Request, max_body_bytes: int) -> dict[str, Any]:
    """The JSON object body of a legacy route.

    Raises:
        UnsupportedMediaType, PayloadTooLarge: the body's type or size.
        InvalidRequest: the body is not a JSON object (reason ``MALFORMED_JSON``) or nests
            too deeply (``JSON_TOO_DEEP``).
    """
    require_content_type(request, JSON_CONTENT_TYPE)
    payload = parse_json(await read_body(request, max_body_bytes))
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object", reason="MALFORMED_JSON")
    return payload


def invalid_answer(result: Validation) -> web.Response:
    return json_response(
        {
            "valid": False,
            "error": _ERRORS.get(result.reason, "credential is not valid"),
            "reason": result.reason,
        },
        status=401,
    )


def rfc3339(epoch: Any) -> str | None:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
