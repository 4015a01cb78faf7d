"""AuthService: thin gRPC methods over the token service and the grants."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from google.protobuf import json_format
from grpc import aio

from chitty.auth.v1 import (
    account_pb2,
    auth_service_pb2,
    auth_service_pb2_grpc,
    session_pb2,
    token_pb2,
)
from chittyauth.domain.accounts import IdentityFlows
from chittyauth.domain.errors import InvalidRequest, NotImplementedYet, Unavailable
from chittyauth.domain.grants import MachineGrants
from chittyauth.domain.issuance import TokenIssuer
from chittyauth.domain.oauth import AuthorizationRequest, OAuthFlows
from chittyauth.domain.tokens import IssuedToken, TokenService
from chittyauth.rpc.auth import caller
from chittyauth.rpc.context import current_call
from chittyauth.rpc.convert import (
    CREDENTIAL_KIND_TO_PROTO,
    INACTIVE_REASON_TO_PROTO,
    TOKEN_USE_FROM_PROTO,
    TOKEN_USE_TO_PROTO,
    claims_message,
    timestamp,
)
from chittyauth.rpc.keys import jwks_response
from chittyauth.rpc.pending import pending_servicer
from chittyauth.rpc.revocations import RevocationHub, watch_revocations
from chittyauth.rpc.services import AUTH
from chittyauth.store.sessions import DeviceInfo
from chittyauth.store.sqlite import SqliteStore

Context = aio.ServicerContext[Any, Any]
MAX_SCOPES = 50

_Base: type[auth_service_pb2_grpc.AuthServiceServicer] = pending_servicer(
    AUTH.base, AUTH.descriptor, "the identity and OAuth capability"
)


class AuthServicer(_Base):  # type: ignore[valid-type,misc]
    """Authenticate, Exchange, Validate, Revoke and GetJwks."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        grants: MachineGrants,
        keys: Any,
        oauth: OAuthFlows,
        revocations: RevocationHub | None = None,
    ) -> None:
        self._store = store
        self._revocations = revocations
        self._tokens = tokens
        self._grants = grants
        self._keys = keys
        self._oauth = oauth
        # Validate's encoded answers for verified access tokens (see Validate).
        self._answers: dict[str, tuple[Mapping[str, Any], auth_service_pb2.ValidateResponse]] = {}
        self._answers_size = max(1, min(tokens.config.verified_cache_size, 20_000))
        # The identity flows and rate limits, set by the composition root once the sessions
        # and the authority exist; until then those credentials answer UNAVAILABLE.
        self.identity: IdentityFlows | None = None
        # IssueToken, set by the composition root once the ChittyID authority exists.
        self.issuer: TokenIssuer | None = None

    async def Authorize(
        self, request: auth_service_pb2.AuthorizeRequest, context: Context
    ) -> auth_service_pb2.AuthorizeResponse:
        user = caller(self._tokens)
        self._identity().limit("authorize", request.client_id, current_call().client_address)
        result = await self._oauth.authorize(
            user,
            AuthorizationRequest(
                response_type=request.response_type,
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                scopes=_scopes(request.scopes),
                state=request.state,
                code_challenge=request.code_challenge,
                code_challenge_method=request.code_challenge_method,
                resources=tuple(request.resources),
            ),
            request_id=current_call().request_id,
        )
        return auth_service_pb2.AuthorizeResponse(
            code=result.code,
            redirect_url=result.redirect_url,
            state=result.state,
            iss=result.iss,
            expire_time=timestamp(result.expires_at),
        )

    async def Validate(
        self, request: auth_service_pb2.ValidateRequest, context: Context
    ) -> auth_service_pb2.ValidateResponse:
        result = self._tokens.validate(
            request.token,
            audience=request.audience,
            required_scopes=request.required_scopes,
            token_use=TOKEN_USE_FROM_PROTO.get(request.token_use, ""),
        )
        if result.active:
            # The hot path: the same token's claims encode to the same answer; expiry and
            # revocation were checked above, on this call.
            cached = self._answers.get(request.token)
            if cached is not None and cached[0] is result.claims:
                return cached[1]
        response = auth_service_pb2.ValidateResponse(
            active=result.active,
            credential_kind=CREDENTIAL_KIND_TO_PROTO.get(
                result.kind, token_pb2.CREDENTIAL_KIND_UNSPECIFIED
            ),
        )
        if result.active:
            response.claims.CopyFrom(claims_message(result.claims))
            if result.kind == "access_token":
                # Keyed by token, valid while the token service keeps the same claims
                # object (its verified cache); an API key's claims are rebuilt each call.
                if len(self._answers) >= self._answers_size:
                    del self._answers[next(iter(self._answers))]
                self._answers[request.token] = (result.claims, response)
        else:
            response.inactive_reason = INACTIVE_REASON_TO_PROTO[result.reason]
        return response

    async def Revoke(
        self, request: auth_service_pb2.RevokeRequest, context: Context
    ) -> auth_service_pb2.RevokeResponse:
        principal, call = caller(self._tokens), current_call()
        self._identity().limit("revoke", principal.client_id, call.client_address)
        await self._oauth.revoke(request.token, request_id=call.request_id, by=principal)
        return auth_service_pb2.RevokeResponse()

    async def GetJwks(
        self, request: auth_service_pb2.GetJwksRequest, context: Context
    ) -> auth_service_pb2.GetJwksResponse:
        return jwks_response(self._keys)

    async def WatchRevocations(
        self, request: auth_service_pb2.WatchRevocationsRequest, context: Context
    ) -> AsyncIterator[auth_service_pb2.WatchRevocationsResponse]:
        if self._revocations is None:
            raise NotImplementedYet("AuthService.WatchRevocations is not wired in this server")
        stream = watch_revocations(self._revocations, caller(self._tokens), request)
        async with aclosing(stream):
            async for response in stream:
                yield response

    async def Authenticate(
        self, request: auth_service_pb2.AuthenticateRequest, context: Context
    ) -> auth_service_pb2.AuthenticateResponse:
        scopes = _scopes(request.scopes)
        call = current_call()
        request_id = call.request_id
        which = request.WhichOneof("credential")
        identity = self._identity()
        identity.limit("authenticate", _credential_client(request), call.client_address)
        if which == "client_credentials":
            creds = request.client_credentials
            issued = await self._grants.client_credentials(
                creds.client_id, creds.client_secret, scopes, request.resources,
                request_id=request_id,
            )  # fmt: skip
        elif which == "api_key":
            issued = await self._grants.api_key(
                request.api_key.api_key, scopes, request.resources, request_id=request_id
            )
        elif which == "portal":
            login = await identity.portal.login(
                request.portal.assertion, request.portal.email, scopes=scopes,
                resources=request.resources, device=_device_info(request),
                request_id=request_id,
            )  # fmt: skip
            response = authenticate_response(login.issued)
            response.portal_url = login.portal_url
            return response
        elif which == "password":
            login = await identity.accounts.login(
                request.password.email, request.password.password, scopes=scopes,
                resources=request.resources, device=_device_info(request),
                request_id=request_id,
            )  # fmt: skip
            return authenticate_response(login.issued)
        elif which == "mcp_server":
            mcp = request.mcp_server
            issued = await identity.mcp_servers.login(
                mcp.client_id, mcp.client_secret, chitty_id=mcp.chitty_id,
                capabilities=tuple(mcp.capabilities), scopes=scopes,
                resources=request.resources, request_id=request_id,
            )  # fmt: skip
        else:
            raise InvalidRequest("a credential is required", reason="MISSING_CREDENTIAL")
        return authenticate_response(issued)

    async def Exchange(
        self, request: auth_service_pb2.ExchangeRequest, context: Context
    ) -> auth_service_pb2.ExchangeResponse:
        which = request.WhichOneof("grant")
        self._identity().limit("exchange", request.client_id, current_call().client_address)
        if which == "client_credentials":
            issued = await self._grants.client_credentials(
                request.client_id,
                request.client_secret,
                _scopes(request.scopes),
                request.resources,
                request_id=current_call().request_id,
            )
            return auth_service_pb2.ExchangeResponse(
                access_token=issued.token,
                token_type="Bearer",
                expire_time=timestamp(issued.expires_at),
                scopes=issued.scopes,
                jti=issued.jti,
            )
        if which is None:
            raise InvalidRequest("a grant is required", reason="MISSING_GRANT")
        request_id = current_call().request_id
        if which == "authorization_code":
            code = request.authorization_code
            grant = await self._oauth.exchange_code(
                request.client_id, request.client_secret, code.code, code.redirect_uri,
                code.code_verifier, request_id=request_id,
            )  # fmt: skip
        elif which == "refresh_token":
            grant = await self._oauth.refresh(
                request.client_id, request.client_secret, request.refresh_token.refresh_token,
                _scopes(request.scopes), request_id=request_id,
            )  # fmt: skip
        else:
            exchange = request.token_exchange
            grant = await self._oauth.token_exchange(
                request.client_id, request.client_secret, exchange.subject_token,
                exchange.subject_token_type, exchange.actor_token, exchange.actor_token_type,
                exchange.audiences, request.resources, _scopes(request.scopes),
                requested_token_type=exchange.requested_token_type, request_id=request_id,
            )  # fmt: skip
        return auth_service_pb2.ExchangeResponse(
            access_token=grant.access.token,
            token_type="Bearer",
            expire_time=timestamp(grant.access.expires_at),
            refresh_token=grant.refresh_token,
            scopes=grant.access.scopes,
            issued_token_type=grant.issued_token_type,
            jti=grant.access.jti,
        )

    async def RegisterAccount(
        self, request: auth_service_pb2.RegisterAccountRequest, context: Context
    ) -> auth_service_pb2.RegisterAccountResponse:
        identity = self._identity()
        call = current_call()
        identity.limit("register", "", call.client_address)
        account = await identity.accounts.register(
            request.email,
            request.password,
            request.display_name,
            metadata=json_format.MessageToDict(request.metadata),
            request_id=call.request_id,
        )
        return auth_service_pb2.RegisterAccountResponse(
            account=account_pb2.Account(
                chitty_id=account.chitty_id,
                email=account.email,
                display_name=account.display_name,
                create_time=timestamp(account.created_at),
            )
        )

    async def IssueToken(
        self, request: auth_service_pb2.IssueTokenRequest, context: Context
    ) -> auth_service_pb2.IssueTokenResponse:
        if self.issuer is None:
            raise Unavailable("token issuing is not ready", reason="NOT_READY")
        call = current_call()
        issuer_client = call.principal.client_id if call.principal is not None else ""
        self._identity().limit("issue", issuer_client, call.client_address)
        ttl_s: int | None = None
        if request.HasField("ttl"):
            # Whole seconds, rounding a fraction up so a tiny positive ttl is not zero.
            ttl_s = request.ttl.seconds + (1 if request.ttl.nanos > 0 else 0)
        issued = await self.issuer.issue(
            caller(self._tokens),
            chitty_id=request.chitty_id,
            ttl_s=ttl_s,
            extra_claims=json_format.MessageToDict(request.extra_claims),
            scopes=_scopes(request.scopes),
            audiences=tuple(request.audiences),
            token_use=TOKEN_USE_FROM_PROTO.get(request.token_use, "?"),
            request_id=current_call().request_id,
        )
        return auth_service_pb2.IssueTokenResponse(
            access_token=issued.token,
            token_type="Bearer",
            expire_time=timestamp(issued.expires_at),
            jti=issued.jti,
        )

    def _identity(self) -> IdentityFlows:
        if self.identity is None:
            raise Unavailable("identity flows are not ready", reason="NOT_READY")
        return self.identity


def authenticate_response(issued: IssuedToken) -> auth_service_pb2.AuthenticateResponse:
    claims = issued.claims
    return auth_service_pb2.AuthenticateResponse(
        access_token=issued.token,
        token_type="Bearer",
        expire_time=timestamp(issued.expires_at),
        scopes=issued.scopes,
        chitty_id=str(claims.get("chitty_id", "")),
        session_id=str(claims.get("sid", "")),
        token_use=TOKEN_USE_TO_PROTO.get(
            str(claims.get("token_use", "")), token_pb2.TOKEN_USE_UNSPECIFIED
        ),
        jti=issued.jti,
    )


def _scopes(requested: Any) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(str(s) for s in requested))
    if len(scopes) > MAX_SCOPES or any(not s or len(s) > 128 or " " in s for s in scopes):
        raise InvalidRequest("scopes must be at most 50 non-empty tokens without spaces")
    return scopes


def _credential_client(request: auth_service_pb2.AuthenticateRequest) -> str:
    """The client (or account) an Authenticate call names, for its rate-limit bucket."""
    which = request.WhichOneof("credential")
    if which == "client_credentials":
        return str(request.client_credentials.client_id)
    if which == "mcp_server":
        return str(request.mcp_server.client_id)
    if which == "password":
        return "account:" + str(request.password.email).strip().lower()
    return ""


_CLIENT_TYPES = {
    session_pb2.CLIENT_TYPE_CLAUDE_DESKTOP: "claude_desktop",
    session_pb2.CLIENT_TYPE_WEB: "web",
    session_pb2.CLIENT_TYPE_MOBILE: "mobile",
}


def _device_info(request: auth_service_pb2.AuthenticateRequest) -> DeviceInfo | None:
    """The DeviceHint as the session service wants it; None when the caller sent none."""
    if not request.HasField("device") or not request.device.device_id:
        return None
    hint = request.device
    return DeviceInfo(
        device_id=hint.device_id,
        display_name=hint.display_name,
        client_type=_CLIENT_TYPES.get(hint.client_type, "web"),
    )
