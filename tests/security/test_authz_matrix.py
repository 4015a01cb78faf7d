"""The authorization matrix: every RPC of the contract × every principal kind.

Generated from the server's method table and the policy table (domain/policy.py): a method
without a policy row fails here, so a new RPC cannot skip the policy. Each call goes through a
real server over a real channel; what the gate must answer is read from the row, and the model's
key promises are also spelled out by hand below, so a wrong row fails too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc import aio

from chitty.auth.v1 import api_key_service_pb2, api_key_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.domain import policy
from chittyauth.domain.policy import Kind
from chittyauth.domain.principal import Principal
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.rpc.services import ALL_SERVICES
from tests.conftest import bearer, running_server
from tests.security.helpers import error_info, mint

PERSON = "AB-C-PEO-1234-P-56-H-7"
SESSION = "sess-matrix"
CALL_TIMEOUT_S = 1.5

METHODS: dict[str, MethodDescriptor] = {
    f"/{spec.full_name}/{method.name}": method
    for spec in ALL_SERVICES
    for method in spec.descriptor.methods
}

# The principals a call can come from: (name, kind, token claims or None for an API key).
PRINCIPALS: dict[str, tuple[Kind, dict[str, Any] | None]] = {
    "anonymous": (Kind.ANONYMOUS, {}),
    "person": (
        Kind.PERSON,
        {"subject": PERSON, "chitty_id": PERSON, "token_use": "portal", "session_id": SESSION,
         "scopes": policy.PERSON_SCOPES},
    ),
    "linked_app_mcp_read": (
        Kind.DELEGATE,
        {"subject": PERSON, "chitty_id": PERSON, "token_use": "linked_app", "session_id": SESSION,
         "client_id": "app-x", "scopes": ("mcp:read",)},
    ),
    "mcp_server": (
        Kind.DELEGATE,
        {"subject": PERSON, "chitty_id": PERSON, "token_use": "mcp_server", "session_id": SESSION,
         "client_id": "mcp-x", "scopes": ("mcp:read", "mcp:write")},
    ),
    "exchange": (
        Kind.DELEGATE,
        {"subject": PERSON, "chitty_id": PERSON, "token_use": "exchange", "client_id": "svc-x",
         "scopes": ("mcp:read",), "act": {"sub": "svc-x"}},
    ),
    "service": (
        Kind.SERVICE,
        {"subject": "svc-x", "client_id": "svc-x", "token_use": "service",
         "scopes": ("mcp:read",)},
    ),
    "api_key": (Kind.API_KEY, None),
    "admin": (Kind.ADMIN, {"subject": "ops", "token_use": "service", "scopes": (policy.ADMIN,)}),
}  # fmt: skip

# Refusals only the gate gives (the domain may refuse an admitted call for its own reasons).
GATE_REASONS = {"PRINCIPAL_NOT_ALLOWED", "MISSING_CREDENTIALS", "NO_POLICY"}


# Only the person's own token approves a linked app (consent): not even an admin's.
PERSON_ONLY = {"/chitty.auth.v1.AuthService/Authorize"}


def test_every_method_of_the_contract_has_exactly_one_policy_row() -> None:
    assert set(METHODS) == set(policy.POLICY), "a method without a policy row, or a stale row"


async def test_every_method_a_server_serves_has_a_row(server: Server) -> None:
    served = {m for m in server.method_table if m.startswith("/chitty.auth.")}
    assert served == set(METHODS)
    assert served <= set(policy.POLICY)


def test_every_row_is_complete() -> None:
    for operation, rule in policy.POLICY.items():
        assert rule.kinds, f"{operation} admits nobody"
        assert rule.summary, f"{operation} has no summary for docs/authz.md"
        if operation not in PERSON_ONLY:
            assert Kind.ADMIN in rule.kinds or Kind.ANONYMOUS in rule.kinds, operation


def expected(rule: policy.Rule, kind: Kind, scopes: Sequence[str]) -> str:
    """What the gate answers: 'open', 'admitted', or the refusal reason."""
    if Kind.ANONYMOUS in rule.kinds:
        return "open"
    if kind is Kind.ANONYMOUS:
        return "MISSING_CREDENTIALS"
    if kind not in rule.kinds:
        return "PRINCIPAL_NOT_ALLOWED"
    if kind in rule.unscoped or not rule.scopes or set(rule.scopes) & set(scopes):
        return "admitted"
    return "INSUFFICIENT_SCOPE"


async def _api_key(server: Server, channel: aio.Channel) -> str:
    # The person's own key: the admin naming another ChittyID would ask the authority.
    person = await mint(
        server, {**(PRINCIPALS["person"][1] or {}), "scopes": (policy.API_KEYS_GENERATE,)}
    )
    reply = await api_key_service_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
        api_key_service_pb2.CreateApiKeyRequest(), metadata=bearer(person)
    )
    return reply.key


async def _call(
    channel: aio.Channel, name: str, method: MethodDescriptor, token: str
) -> aio.AioRpcError | None:
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": response_type.FromString,
    }
    metadata = bearer(token) if token else ()
    try:
        if method.server_streaming:
            stream = channel.unary_stream(name, **kwargs)(
                request_type(), metadata=metadata, timeout=CALL_TIMEOUT_S
            )
            async for _ in stream:
                break
            stream.cancel()
        else:
            await channel.unary_unary(name, **kwargs)(
                request_type(), metadata=metadata, timeout=CALL_TIMEOUT_S
            )
    except aio.AioRpcError as error:
        return error
    return None


def _reason(error: aio.AioRpcError) -> tuple[str, dict[str, str]]:
    if STATUS_DETAILS_KEY not in dict(error.trailing_metadata() or ()):
        return "", {}
    return error_info(error)


@pytest.fixture
async def tokens(server: Server, channel: aio.Channel) -> dict[str, tuple[str, Sequence[str]]]:
    """A credential of every principal, with the scopes it holds."""
    minted: dict[str, tuple[str, Sequence[str]]] = {}
    for name, (_kind, claims) in PRINCIPALS.items():
        if claims == {}:
            minted[name] = ("", ())
        elif claims is not None:
            minted[name] = (await mint(server, claims), tuple(claims["scopes"]))
    minted["api_key"] = (await _api_key(server, channel), ("read",))
    return minted


@pytest.mark.parametrize("operation", sorted(METHODS))
async def test_matrix(
    operation: str, server: Server, channel: aio.Channel, tokens: dict[str, Any]
) -> None:
    rule = policy.rule_for(operation)
    outcomes: dict[str, str] = {}
    for name, (kind, _claims) in PRINCIPALS.items():
        token, scopes = tokens[name]
        want = expected(rule, kind, scopes)
        error = await _call(channel, operation, METHODS[operation], token)
        got_reason, metadata = _reason(error) if error is not None else ("", {})
        if want == "MISSING_CREDENTIALS":
            assert error is not None
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert got_reason == want, (name, got_reason)
        elif want == "PRINCIPAL_NOT_ALLOWED":
            assert error is not None
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
            assert got_reason == want, (name, got_reason)
            assert metadata["principal_kind"] == kind.value
        elif want == "INSUFFICIENT_SCOPE":
            assert error is not None
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
            assert got_reason == want, (name, got_reason)
            assert metadata["required_scopes"] == " ".join(rule.scopes)
        else:  # admitted or open: whatever the operation answers, the gate did not refuse
            if error is not None:
                assert error.code() != grpc.StatusCode.INTERNAL, (name, error.details())
                assert error.code() != grpc.StatusCode.UNKNOWN, (name, error.details())
                assert got_reason not in GATE_REASONS, (name, got_reason)
                if got_reason == "INSUFFICIENT_SCOPE":
                    assert metadata.get("required_scopes") != " ".join(rule.scopes), name
        outcomes[name] = want
    # Admins reach every operation but consent; anonymous callers only the open ones.
    assert (outcomes["admin"] in ("admitted", "open")) == (operation not in PERSON_ONLY)
    assert (outcomes["anonymous"] == "open") == (Kind.ANONYMOUS in rule.kinds)


# -- the model, said by hand -----------------------------------------------------------------

PERSON_DATA = [
    op
    for op in METHODS
    if op.split("/")[1] in {
        "chitty.auth.v1.SyncService", "chitty.auth.v1.ApiKeyService",
        "chitty.auth.v1.PermissionService",
    }
]  # fmt: skip
ADMINISTRATION = [
    op
    for op in METHODS
    if op.split("/")[1] in {
        "chitty.auth.v1.ClientService", "chitty.auth.v1.KeyService",
        "chitty.auth.v1.AuditService",
    }
]  # fmt: skip


@pytest.mark.parametrize("operation", sorted(PERSON_DATA))
def test_a_linked_app_with_mcp_read_reaches_none_of_the_persons_data(operation: str) -> None:
    kind, claims = PRINCIPALS["linked_app_mcp_read"]
    assert claims is not None
    verdict = expected(policy.rule_for(operation), kind, claims["scopes"])
    assert verdict in ("INSUFFICIENT_SCOPE", "PRINCIPAL_NOT_ALLOWED")


@pytest.mark.parametrize("operation", sorted(PERSON_DATA))
def test_the_person_reaches_their_own_data(operation: str) -> None:
    assert expected(policy.rule_for(operation), Kind.PERSON, ()) == "admitted"


@pytest.mark.parametrize("operation", sorted(ADMINISTRATION))
@pytest.mark.parametrize("principal", ["person", "linked_app_mcp_read", "mcp_server", "service"])
def test_administration_needs_an_admin_scope(operation: str, principal: str) -> None:
    kind, claims = PRINCIPALS[principal]
    assert claims is not None
    assert expected(policy.rule_for(operation), kind, claims["scopes"]) == "INSUFFICIENT_SCOPE"


def test_admin_scopes_are_never_grantable() -> None:
    holder = Principal(subject=PERSON, token_use="portal", scopes=frozenset(policy.SCOPES))
    assert set(policy.grantable(holder, tuple(policy.ADMIN_SCOPES))) == policy.ADMIN_SCOPES
    assert policy.grantable(holder, (policy.MCP_READ,)) == []


async def test_a_server_with_a_method_but_no_row_refuses_it(
    monkeypatch: pytest.MonkeyPatch, config: Config
) -> None:
    # A contract method whose row is missing is refused for everyone, admins included.
    operation = "/chitty.auth.v1.KeyService/ListSigningKeys"
    monkeypatch.delitem(policy.POLICY, operation)
    async with running_server(config) as fresh, aio.insecure_channel(fresh.grpc_target) as chan:
        admin = await mint(fresh, dict(PRINCIPALS["admin"][1] or {}))
        error = await _call(chan, operation, METHODS[operation], admin)
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _reason(error)[0] == "NO_POLICY"


def test_the_documented_table_is_the_policy_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "authz.md").read_text()
    start = doc.index("<!-- policy-table")
    block = doc[doc.index("\n", start) + 1 : doc.index("<!-- end policy-table -->")]
    assert block == policy.markdown_table(), "paste `chittyauth policy` into docs/authz.md"
    for scope in policy.SCOPES:
        assert f"| `{scope}` |" in doc, scope


async def test_every_http_route_that_is_not_an_rpc_has_a_row(server: Server) -> None:
    # What the running shim serves: each (method, path) other than the transcoder's catch-all
    # and the method-not-allowed answers must have a row, like every RPC.
    assert server.http is not None
    assert server.http.app is not None
    served = set()
    for route in server.http.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("*", "HEAD") or path == "/{tail}":
            continue
        served.add(f"{route.method} {path}")
    missing = sorted(r for r in served if "HTTP " + r not in policy.HTTP_ROUTES)
    assert not missing, f"HTTP routes without a policy row: {missing}"
    stale = sorted(r for r in policy.HTTP_ROUTES if r.removeprefix("HTTP ") not in served)
    assert not stale, f"policy rows for routes nobody serves: {stale}"
    # The historical forms of RPCs answer by the RPC's own row.
    for route, operation in policy.LEGACY_AS_RPC.items():
        assert policy.http_rule(route) is policy.rule_for(operation)
