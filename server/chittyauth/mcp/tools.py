"""The 11 historical ChittyAuth MCP tools, each one or two ChittyAuth RPCs.

A handler takes the call (the ``AsyncAuthClient`` to act with, and who the caller is) and the
validated arguments, and returns the structured result. The client carries the operator's
credentials over stdio and the caller's token over HTTP (``policy.mcp_tool_authority``); a
refusal by the service is the client's ``ChittyAuthError``, and input the service cannot take
is refused here as a ``ServiceRefusal``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from chitty.auth.client import AsyncAuthClient, StaticToken
from chitty.auth.v1 import (
    api_key_service_pb2,
    auth_service_pb2,
    permission_service_pb2,
    sync_service_pb2,
    token_pb2,
)
from chittyauth.domain.tokens import RESERVED_CLAIMS
from chittyauth.mcp.schemas import TOOL_SCHEMAS
from chittyauth.mcp.service import ServiceRefusal

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TOKEN_TYPES = {
    "portal": token_pb2.TOKEN_USE_PORTAL,
    "server": token_pb2.TOKEN_USE_MCP_SERVER,
    "linked_app": token_pb2.TOKEN_USE_LINKED_APP,
}
# PKCE verifiers of the authorizations this agent made, so exchange_oauth_tokens can take the
# historical arguments (code, client id, secret); bounded, dropped when the code expires, and
# kept per caller, so one caller's code is never completed with a verifier made for another.
MAX_PENDING_CODES = 1000

Args = Mapping[str, Any]
Result = dict[str, Any]


def invalid(message: str, reason: str = "INVALID_ARGUMENT") -> ServiceRefusal:
    """A refusal of the tool's input before any call."""
    return ServiceRefusal("INVALID_ARGUMENT", reason, message)


def rfc3339(ts: timestamp_pb2.Timestamp) -> str | None:
    """The Timestamp as RFC 3339 text, or None when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToJsonString()


def parse_time(text: str, field: str) -> timestamp_pb2.Timestamp:
    """An RFC 3339 argument as a Timestamp.

    Raises:
        ServiceRefusal: not an RFC 3339 time.
    """
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        raise invalid(f"{field} must be an RFC 3339 time", "INVALID_TIME") from None
    return stamp


def parse_duration(text: str) -> int:
    """'30m', '1h', '7d' as seconds."""
    match = re.fullmatch(r"([1-9][0-9]{0,5})([smhd])", text)
    if match is None:
        raise invalid('expires_in must look like "30m", "1h" or "7d"', "INVALID_EXPIRES_IN")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _remaining(ts: timestamp_pb2.Timestamp) -> int:
    return max(0, int(ts.ToSeconds() - time.time()))


def claims_dict(claims: token_pb2.TokenClaims) -> Result:
    """TokenClaims as JSON, snake_case."""
    return json_format.MessageToDict(claims, preserving_proto_field_name=True)


@dataclass(frozen=True)
class Call:
    """One tool call: the client to act with and the caller ('' for the operator, over stdio;
    over HTTP the verified token's issuer, client and subject)."""

    client: AsyncAuthClient
    caller: str = ""


@dataclass
class _PendingCode:
    client_id: str
    redirect_uri: str
    verifier: str
    expires_at: float


class Tools:
    """The tool handlers; each call names the client it acts with."""

    def __init__(self) -> None:
        self._pending: dict[str, _PendingCode] = {}
        self.handlers: dict[str, Callable[[Call, Args], Awaitable[Result]]] = {
            "generate_api_key": self.generate_api_key,
            "validate_api_key": self.validate_api_key,
            "check_permission": self.check_permission,
            "generate_jwt": self.generate_jwt,
            "validate_jwt": self.validate_jwt,
            "grant_authorization": self.grant_authorization,
            "list_sessions": self.list_sessions,
            "mcp_portal_authenticate": self.mcp_portal_authenticate,
            "create_linked_app_oauth": self.create_linked_app_oauth,
            "exchange_oauth_tokens": self.exchange_oauth_tokens,
            "validate_mcp_token": self.validate_mcp_token,
        }
        assert set(self.handlers) == set(TOOL_SCHEMAS)

    # -- API keys ------------------------------------------------------------------------

    async def generate_api_key(self, call: Call, args: Args) -> Result:
        """ApiKeyService.CreateApiKey."""
        request = api_key_service_pb2.CreateApiKeyRequest(
            chitty_id=args["chitty_id"],
            display_name=args.get("name", ""),
            scopes=args.get("scopes", []),
        )
        if "expires_at" in args:
            request.expire_time.CopyFrom(parse_time(args["expires_at"], "expires_at"))
        reply = await call.client.create_api_key(request)
        key = reply.api_key
        return {
            "key_id": key.key_id,
            "api_key": reply.key,
            "chitty_id": key.chitty_id,
            "name": key.display_name,
            "scopes": list(key.scopes),
            "created_at": rfc3339(key.create_time),
            "expires_at": rfc3339(key.expire_time),
        }

    async def validate_api_key(self, call: Call, args: Args) -> Result:
        """AuthService.Validate; only an API key counts as valid."""
        reply = await self._validate(call, args["api_key"])
        if reply.active and reply.credential_kind != token_pb2.CREDENTIAL_KIND_API_KEY:
            return {"valid": False, "reason": "NOT_AN_API_KEY"}
        if not reply.active:
            return {"valid": False, "reason": _inactive(reply)}
        claims = reply.claims
        return {
            "valid": True,
            "key_id": claims.jti,
            "chitty_id": claims.chitty_id or claims.sub,
            "scopes": list(claims.scopes),
            "expires_at": rfc3339(claims.expire_time),
        }

    # -- permissions ---------------------------------------------------------------------

    async def check_permission(self, call: Call, args: Args) -> Result:
        """PermissionService.CheckPermission."""
        reply = await call.client.check_permission(
            permission_service_pb2.CheckPermissionRequest(
                chitty_id=args["chitty_id"],
                permission=args["permission"],
                resource=args.get("resource", ""),
            )
        )
        return {
            "authorized": reply.allowed,
            "chitty_id": args["chitty_id"],
            "permission": args["permission"],
            "resource": args.get("resource", ""),
            "grant_id": reply.grant.grant_id if reply.allowed else None,
        }

    async def grant_authorization(self, call: Call, args: Args) -> Result:
        """PermissionService.GrantPermission (naming another grantor needs admin)."""
        request = permission_service_pb2.GrantPermissionRequest(
            grantor_chitty_id=args["grantor_chitty_id"],
            grantee_chitty_id=args["grantee_chitty_id"],
            permission=args["permission"],
            resource=args.get("resource", ""),
        )
        if "expires_at" in args:
            request.expire_time.CopyFrom(parse_time(args["expires_at"], "expires_at"))
        reply = await call.client.grant_permission(request)
        grant = reply.grant
        return {
            "authorization_id": grant.grant_id,
            "grantor_chitty_id": grant.grantor_chitty_id,
            "grantee_chitty_id": grant.grantee_chitty_id,
            "permission": grant.permission,
            "resource": grant.resource,
            "created_at": rfc3339(grant.create_time),
            "expires_at": rfc3339(grant.expire_time),
        }

    # -- tokens --------------------------------------------------------------------------

    async def generate_jwt(self, call: Call, args: Args) -> Result:
        """AuthService.IssueToken for a ChittyID (admin or ``tokens:issue``)."""
        extra = args.get("claims") or {}
        reserved = sorted(set(extra) & RESERVED_CLAIMS)
        if reserved:
            raise invalid(f"reserved claims cannot be set: {', '.join(reserved)}", "RESERVED_CLAIM")
        request = auth_service_pb2.IssueTokenRequest(
            chitty_id=args["chitty_id"],
            scopes=args.get("scopes", []),
            audiences=args.get("audiences", []),
        )
        if "expires_in" in args:
            request.ttl.CopyFrom(duration_pb2.Duration(seconds=parse_duration(args["expires_in"])))
        if extra:
            claims = struct_pb2.Struct()
            claims.update(extra)
            request.extra_claims.CopyFrom(claims)
        reply = await call.client.issue_token(request)
        return {
            "token": reply.access_token,
            "type": reply.token_type or "Bearer",
            "chitty_id": args["chitty_id"],
            "jti": reply.jti,
            "expires_in": _remaining(reply.expire_time),
            "expires_at": rfc3339(reply.expire_time),
        }

    async def validate_jwt(self, call: Call, args: Args) -> Result:
        """AuthService.Validate of an access token, returning its claims."""
        reply = await self._validate(call, args["token"], audience=args.get("audience", ""))
        if reply.active and reply.credential_kind != token_pb2.CREDENTIAL_KIND_ACCESS_TOKEN:
            return {"valid": False, "reason": "NOT_A_JWT"}
        if not reply.active:
            return {"valid": False, "reason": _inactive(reply)}
        claims = reply.claims
        return {
            "valid": True,
            "chitty_id": claims.chitty_id or None,
            "issued_at": rfc3339(claims.issue_time),
            "expires_at": rfc3339(claims.expire_time),
            "claims": claims_dict(claims),
        }

    async def validate_mcp_token(self, call: Call, args: Args) -> Result:
        """AuthService.Validate with a token_use filter."""
        token_type = args["token_type"]
        reply = await self._validate(call, args["token"], token_use=_TOKEN_TYPES[token_type])
        if not reply.active:
            return {"valid": False, "reason": _inactive(reply), "token_type": token_type}
        claims = reply.claims
        return {
            "valid": True,
            "token_type": token_type,
            "chitty_id": claims.chitty_id or None,
            "server_id": claims.server_id or None,
            "capabilities": list(claims.capabilities),
            "scopes": list(claims.scopes),
            "expires_at": rfc3339(claims.expire_time),
        }

    # -- sessions ------------------------------------------------------------------------

    async def list_sessions(self, call: Call, args: Args) -> Result:
        """SyncService.ListSessions (the caller's own when no ChittyID is named)."""
        reply = await call.client.list_sessions(
            sync_service_pb2.ListSessionsRequest(
                chitty_id=args.get("chitty_id", ""),
                include_ended=args.get("include_ended", False),
                page_size=args.get("page_size", 0),
                page_token=args.get("page_token", ""),
            )
        )
        sessions = [
            json_format.MessageToDict(s, preserving_proto_field_name=True) for s in reply.sessions
        ]
        return {"sessions": sessions, "next_page_token": reply.next_page_token or None}

    # -- portal and linked apps ----------------------------------------------------------

    async def mcp_portal_authenticate(self, call: Call, args: Args) -> Result:
        """AuthService.Authenticate with a Cloudflare Access assertion."""
        reply = await call.client.authenticate(
            auth_service_pb2.AuthenticateRequest(
                portal=auth_service_pb2.PortalCredential(
                    assertion=args["cf_access_jwt"], email=args.get("cf_access_email", "")
                )
            )
        )
        return {
            "authenticated": True,
            "chitty_id": reply.chitty_id,
            "portal_token": reply.access_token,
            "mcp_portal_url": reply.portal_url or None,
            "session_id": reply.session_id or None,
            "expires_at": rfc3339(reply.expire_time),
        }

    async def create_linked_app_oauth(self, call: Call, args: Args) -> Result:
        """AuthService.Authorize as the person (their token), with PKCE made by the agent."""
        user_token = args["user_token"]
        if "chitty_id" in args:
            user = await self._validate(call, user_token)
            if not user.active or user.claims.chitty_id != args["chitty_id"]:
                raise ServiceRefusal(
                    "PERMISSION_DENIED",
                    "SUBJECT_MISMATCH",
                    "the user_token is not an active token of that ChittyID",
                )
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        # Authorize approves for the caller, so this call carries the person's token (on the
        # agent's channel, which the agent's client keeps owning), not the agent's.
        as_person = AsyncAuthClient(
            channel=call.client.channel, credentials=StaticToken(user_token)
        )
        reply = await as_person.authorize(
            auth_service_pb2.AuthorizeRequest(
                response_type="code",
                client_id=args["app_id"],
                redirect_uri=args["redirect_uri"],
                scopes=args.get("scopes", []),
                state=args.get("state", ""),
                code_challenge=challenge.rstrip(b"=").decode(),
                code_challenge_method="S256",
            )
        )
        self._remember(
            call.caller, reply.code, args["app_id"], args["redirect_uri"], verifier, reply
        )
        return {
            "authorized": True,
            "authorization_code": reply.code,
            "redirect_uri": args["redirect_uri"],
            "redirect_url": reply.redirect_url,
            "state": reply.state,
            "code_verifier": verifier,
            "expires_in": _remaining(reply.expire_time),
        }

    async def exchange_oauth_tokens(self, call: Call, args: Args) -> Result:
        """AuthService.Exchange: authorization_code or refresh_token, as the linked app."""
        request = auth_service_pb2.ExchangeRequest(
            client_id=args["client_id"],
            client_secret=args.get("client_secret", ""),
            scopes=args.get("scopes", []),
        )
        if args["grant_type"] == "authorization_code":
            code = args.get("authorization_code")
            if not code:
                raise invalid("authorization_code is required for this grant", "MISSING_CODE")
            pending = self._recall(call.caller, code)
            if pending is not None and pending.client_id != args["client_id"]:
                pending = None
            redirect_uri = args.get("redirect_uri") or (pending.redirect_uri if pending else "")
            verifier = args.get("code_verifier") or (pending.verifier if pending else "")
            request.authorization_code.CopyFrom(
                auth_service_pb2.AuthorizationCodeGrant(
                    code=code, redirect_uri=redirect_uri, code_verifier=verifier
                )
            )
        else:
            refresh = args.get("refresh_token")
            if not refresh:
                raise invalid("refresh_token is required for this grant", "MISSING_REFRESH_TOKEN")
            request.refresh_token.CopyFrom(
                auth_service_pb2.RefreshTokenGrant(refresh_token=refresh)
            )
        reply = await call.client.exchange(request)
        return {
            "access_token": reply.access_token,
            "refresh_token": reply.refresh_token or None,
            "token_type": "Bearer",
            "expires_in": _remaining(reply.expire_time),
            "scope": " ".join(reply.scopes),
        }

    # -- helpers -------------------------------------------------------------------------

    async def _validate(
        self, call: Call, token: str, *, audience: str = "", token_use: int = 0
    ) -> auth_service_pb2.ValidateResponse:
        return await call.client.validate(
            auth_service_pb2.ValidateRequest(
                token=token,
                audience=audience,
                token_use=token_use,  # type: ignore[arg-type]
            )
        )

    def _remember(
        self,
        caller: str,
        code: str,
        client_id: str,
        redirect_uri: str,
        verifier: str,
        reply: auth_service_pb2.AuthorizeResponse,
    ) -> None:
        now = time.time()
        self._pending = {k: v for k, v in self._pending.items() if v.expires_at > now}
        if len(self._pending) >= MAX_PENDING_CODES:
            self._pending.pop(next(iter(self._pending)))
        self._pending[_code_key(caller, code)] = _PendingCode(
            client_id, redirect_uri, verifier, reply.expire_time.ToSeconds()
        )

    def _recall(self, caller: str, code: str) -> _PendingCode | None:
        return self._pending.pop(_code_key(caller, code), None)


def _code_key(caller: str, code: str) -> str:
    # Keyed by hash so the agent's memory never holds a usable code.
    return hashlib.sha256(f"{caller}\x00{code}".encode()).hexdigest()


def _inactive(reply: auth_service_pb2.ValidateResponse) -> str:
    name = token_pb2.InactiveReason.Name(reply.inactive_reason)
    return name.removeprefix("INACTIVE_REASON_")
