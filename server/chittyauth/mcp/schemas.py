"""JSON schemas of the 11 tools' inputs, with their historical argument names."""

from __future__ import annotations

from typing import Any

CHITTY_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "A ChittyID, e.g. AB-C-PEO-1234-P-56-H-7.",
}
TOKEN = {"type": "string", "minLength": 1, "maxLength": 8192}
SCOPES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!#-\\[\\]-~]+$"},
    "maxItems": 50,
    "uniqueItems": True,
}
TIMESTAMP = {
    "type": "string",
    "maxLength": 40,
    "description": "An RFC 3339 time, e.g. 2030-01-31T12:00:00Z.",
}
SHORT_TEXT = {"type": "string", "minLength": 1, "maxLength": 256}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _with(base: dict[str, Any], description: str) -> dict[str, Any]:
    return {**base, "description": description}


TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "generate_api_key": _object(
        {
            "chitty_id": _with(CHITTY_ID, "The ChittyID that will own the key."),
            "name": _with(SHORT_TEXT, "A human-readable name for the key."),
            "scopes": _with(SCOPES, 'Scopes the key grants (default ["read"]).'),
            "expires_at": _with(TIMESTAMP, "When the key stops working; never when omitted."),
        },
        ["chitty_id"],
    ),
    "validate_api_key": _object(
        {"api_key": _with(TOKEN, "The API key (sk_live_...).")},
        ["api_key"],
    ),
    "check_permission": _object(
        {
            "chitty_id": _with(CHITTY_ID, "Whose permission to check."),
            "permission": _with(SHORT_TEXT, "The permission, e.g. documents:read."),
            "resource": _with(SHORT_TEXT, "The resource; any resource when omitted."),
        },
        ["chitty_id", "permission"],
    ),
    "generate_jwt": _object(
        {
            "chitty_id": _with(
                CHITTY_ID, "The ChittyID the token is for; checked with the ChittyID authority."
            ),
            "expires_in": {
                "type": "string",
                "pattern": "^[1-9][0-9]{0,5}[smhd]$",
                "description": 'Wanted lifetime, e.g. "30m" or "1h"; the service default when'
                " omitted, and never beyond the longest configured token lifetime.",
            },
            "claims": {
                "type": "object",
                "maxProperties": 20,
                "description": "Extra claims; reserved JWT claims are refused.",
            },
            "audiences": _with(
                {**SCOPES, "maxItems": 10}, "Audiences for the token; the issuer when omitted."
            ),
            "scopes": _with(SCOPES, "Scopes for the token; none when omitted."),
        },
        ["chitty_id"],
    ),
    "validate_jwt": _object(
        {
            "token": _with(TOKEN, "The access token (a JWT)."),
            "audience": _with(SHORT_TEXT, "When given, this audience must be in aud."),
        },
        ["token"],
    ),
    "grant_authorization": _object(
        {
            "grantor_chitty_id": _with(CHITTY_ID, "Who grants the permission."),
            "grantee_chitty_id": _with(CHITTY_ID, "Who receives it."),
            "permission": _with(SHORT_TEXT, "The permission, e.g. documents:read."),
            "resource": _with(SHORT_TEXT, "The resource; every resource when omitted."),
            "expires_at": _with(TIMESTAMP, "When the grant lapses; never when omitted."),
        },
        ["grantor_chitty_id", "grantee_chitty_id", "permission"],
    ),
    "list_sessions": _object(
        {
            "chitty_id": _with(CHITTY_ID, "Whose sessions; the agent's own when omitted."),
            "include_ended": {
                "type": "boolean",
                "description": "Include revoked and expired sessions.",
            },
            "page_size": {"type": "integer", "minimum": 1, "maximum": 500},
            "page_token": _with(
                {"type": "string", "maxLength": 512}, "From a previous call's next_page_token."
            ),
        },
        [],
    ),
    "mcp_portal_authenticate": _object(
        {
            "cf_access_jwt": _with(TOKEN, "The Cf-Access-Jwt-Assertion JWT."),
            "cf_access_email": _with(
                {"type": "string", "minLength": 3, "maxLength": 320},
                "The Cf-Access-Authenticated-User-Email header, when sent.",
            ),
        },
        ["cf_access_jwt"],
    ),
    "create_linked_app_oauth": _object(
        {
            "user_token": _with(
                TOKEN, "The person's portal (or password-login) token: who approves the app."
            ),
            "app_id": _with(SHORT_TEXT, "The linked app's client id."),
            "redirect_uri": _with(
                {"type": "string", "minLength": 1, "maxLength": 2000},
                "One of the app's registered redirect URIs, exactly.",
            ),
            "chitty_id": _with(CHITTY_ID, "When given, must be the user token's ChittyID."),
            "scopes": _with(SCOPES, "Scopes within the app's allowed ones."),
            "state": _with({"type": "string", "maxLength": 512}, "Echoed to the app."),
        },
        ["user_token", "app_id", "redirect_uri"],
    ),
    "exchange_oauth_tokens": _object(
        {
            "grant_type": {
                "type": "string",
                "enum": ["authorization_code", "refresh_token"],
                "description": "authorization_code or refresh_token.",
            },
            "client_id": _with(SHORT_TEXT, "The linked app's client id."),
            "client_secret": _with(TOKEN, "The app's secret (confidential apps)."),
            "authorization_code": _with(TOKEN, "The code, for authorization_code."),
            "redirect_uri": _with(
                {"type": "string", "minLength": 1, "maxLength": 2000},
                "The redirect URI of the authorization (remembered when this agent made it).",
            ),
            "code_verifier": _with(
                {"type": "string", "minLength": 43, "maxLength": 128},
                "The PKCE verifier (remembered when this agent made the authorization).",
            ),
            "refresh_token": _with(TOKEN, "The refresh token, for refresh_token."),
            "scopes": _with(SCOPES, "Narrower scopes, for refresh_token."),
        },
        ["grant_type", "client_id"],
    ),
    "validate_mcp_token": _object(
        {
            "token": _with(TOKEN, "The token to check."),
            "token_type": {
                "type": "string",
                "enum": ["portal", "server", "linked_app"],
                "description": "What the token must be: portal, server (an MCP server's"
                " token) or linked_app.",
            },
        },
        ["token", "token_type"],
    ),
}
