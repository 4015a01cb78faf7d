"""The transcoder, end to end: a real aiohttp client -> the shim -> a real grpc.aio server."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import pkgutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.api import annotations_pb2, http_pb2
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import chitty.auth.v1
from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
    session_pb2,
    sync_service_pb2,
    sync_service_pb2_grpc,
)
from chittyauth.config import HttpConfig
from chittyauth.http.transcoder import (
    PathTemplate,
    TemplateError,
    Transcoder,
    parse_template,
)

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ORIGIN = "https://app.chitty.example"


def contract_services() -> list[ServiceDescriptor]:
    """Every service of chitty.auth.v1, from the generated modules."""
    services: list[ServiceDescriptor] = []
    for module in pkgutil.iter_modules(chitty.auth.v1.__path__):
        if module.name.endswith("_pb2"):
            loaded = importlib.import_module(f"chitty.auth.v1.{module.name}")
            services.extend(loaded.DESCRIPTOR.services_by_name.values())
    return services


# -- a test-only service, for what the contract has no GET for (repeated, nested, maps, **) ----


def _echo_service() -> ServiceDescriptor:
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName("chitty.test.v1.EchoService")
    except KeyError:
        pass
    field_type = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="chitty/test/v1/echo.proto",
        package="chitty.test.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "google/protobuf/timestamp.proto"],
    )
    kind = proto.enum_type.add(name="EchoKind")
    kind.value.add(name="ECHO_KIND_UNSPECIFIED", number=0)
    kind.value.add(name="ECHO_KIND_LOUD", number=1)
    kind.value.add(name="ECHO_KIND_QUIET", number=2)
    inner = proto.message_type.add(name="Inner")
    inner.field.add(name="count", number=1, type=field_type.TYPE_INT64, label=1)
    inner.field.add(name="flag", number=2, type=field_type.TYPE_BOOL, label=1)
    inner.field.add(
        name="kinds",
        number=3,
        type=field_type.TYPE_ENUM,
        label=3,
        type_name=".chitty.test.v1.EchoKind",
    )
    request = proto.message_type.add(name="EchoRequest")
    entry = request.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field_type.TYPE_STRING, label=1)
    entry.field.add(name="value", number=2, type=field_type.TYPE_STRING, label=1)
    request.field.add(name="name", number=1, type=field_type.TYPE_STRING, label=1)
    request.field.add(name="tags", number=2, type=field_type.TYPE_STRING, label=3)
    request.field.add(
        name="kind",
        number=3,
        type=field_type.TYPE_ENUM,
        label=1,
        type_name=".chitty.test.v1.EchoKind",
    )
    request.field.add(
        name="inner",
        number=4,
        type=field_type.TYPE_MESSAGE,
        label=1,
        type_name=".chitty.test.v1.Inner",
    )
    request.field.add(
        name="since",
        number=5,
        type=field_type.TYPE_MESSAGE,
        label=1,
        type_name=".google.protobuf.Timestamp",
    )
    request.field.add(
        name="labels",
        number=6,
        type=field_type.TYPE_MESSAGE,
        label=3,
        type_name=".chitty.test.v1.EchoRequest.LabelsEntry",
    )
    response = proto.message_type.add(name="EchoResponse")
    response.field.add(
        name="request",
        number=1,
        type=field_type.TYPE_MESSAGE,
        label=1,
        type_name=".chitty.test.v1.EchoRequest",
    )
    service = proto.service.add(name="EchoService")
    method = service.method.add(
        name="Echo",
        input_type=".chitty.test.v1.EchoRequest",
        output_type=".chitty.test.v1.EchoResponse",
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        http_pb2.HttpRule(
            get="/echo/{name=things/**}",
            additional_bindings=[http_pb2.HttpRule(post="/echo:post", body="*")],
        )
    )
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindServiceByName("chitty.test.v1.EchoService")


ECHO = _echo_service()
EchoRequest = message_factory.GetMessageClass(ECHO.methods_by_name["Echo"].input_type)
EchoResponse = message_factory.GetMessageClass(ECHO.methods_by_name["Echo"].output_type)


async def _echo(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    reply = EchoResponse()
    reply.request.CopyFrom(request)  # type: ignore[attr-defined]
    return reply


# -- servicers that record what they received -------------------------------------------------


@dataclass
class Recorder:
    """What each RPC received: the request and its text metadata."""

    requests: dict[str, Message] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    release_second: asyncio.Event = field(default_factory=asyncio.Event)
    second_sent: bool = False
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def record(
        self, rpc: str, request: Message, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self.requests[rpc] = request
        self.metadata[rpc] = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }


def _pack(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any],
    code: grpc.StatusCode,
    message: str,
    *details: Message,
) -> None:
    status = status_pb2.Status(
        code=code.value[0], message=message, details=[_pack(d) for d in details]
    )
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


def _error_info(reason: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="auth.chitty.cc")


class SyncServicer(sync_service_pb2_grpc.SyncServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetSession(self, request: Any, context: Any) -> Any:
        self.recorder.record("GetSession", request, context)
        if request.name == "sessions/missing":
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "no such session",
                _error_info("SESSION_NOT_FOUND"),
            )
        session = session_pb2.Session(
            name=request.name,
            status=session_pb2.SESSION_STATUS_ACTIVE,
            create_time=timestamp_pb2.Timestamp(seconds=1_700_000_000),
            mcp_servers=["chittymcp"],
        )
        return sync_service_pb2.GetSessionResponse(session=session)

    async def ListSessions(self, request: Any, context: Any) -> Any:
        self.recorder.record("ListSessions", request, context)
        return sync_service_pb2.ListSessionsResponse()

    async def RevokeSession(self, request: Any, context: Any) -> Any:
        self.recorder.record("RevokeSession", request, context)
        return sync_service_pb2.RevokeSessionResponse(
            session=session_pb2.Session(
                name=request.name, status=session_pb2.SESSION_STATUS_REVOKED
            )
        )

    async def PutSessionState(self, request: Any, context: Any) -> Any:
        self.recorder.record("PutSessionState", request, context)
        if request.mcp_server == "conflict":
            await _abort(
                context,
                grpc.StatusCode.ABORTED,
                "the state changed since it was read",
                _error_info("VERSION_CONFLICT"),
            )
        state = session_pb2.SessionState(
            name=request.name,
            mcp_server=request.mcp_server,
            data=request.data,
            version=request.expected_version + 1,
        )
        return sync_service_pb2.PutSessionStateResponse(state=state)

    async def WatchSessions(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.recorder.record("WatchSessions", request, context)
        if request.name == "sessions/missing":
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "no such session",
                _error_info("SESSION_NOT_FOUND"),
            )
        try:
            event = session_pb2.SessionEvent(
                cursor="c1", type=session_pb2.SESSION_EVENT_TYPE_CREATED, state_version=7
            )
            yield sync_service_pb2.WatchSessionsResponse(event=event)
            await self.recorder.release_second.wait()
            self.recorder.second_sent = True
            yield sync_service_pb2.WatchSessionsResponse(cursor="c2")
            if request.cursor == "fail":
                await _abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    "store went away",
                    _error_info("UNAVAILABLE"),
                )
        except asyncio.CancelledError:
            self.recorder.stream_cancelled.set()
            raise


class ClientServicer(client_service_pb2_grpc.ClientServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetClient(self, request: Any, context: Any) -> Any:
        self.recorder.record("GetClient", request, context)
        await _abort(
            context, grpc.StatusCode.NOT_FOUND, "no such client", _error_info("CLIENT_NOT_FOUND")
        )

    async def ListClients(self, request: Any, context: Any) -> Any:
        self.recorder.record("ListClients", request, context)
        return client_service_pb2.ListClientsResponse()

    async def UpdateClient(self, request: Any, context: Any) -> Any:
        self.recorder.record("UpdateClient", request, context)
        return client_service_pb2.UpdateClientResponse(client=request.client)


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def Validate(self, request: Any, context: Any) -> Any:
        self.recorder.record("Validate", request, context)
        if request.token == "slow-down":
            retry = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=1, nanos=200_000_000)
            )
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many requests",
                _error_info("RATE_LIMITED"),
                retry,
            )
        request_id = dict(context.invocation_metadata() or ()).get("x-request-id", "generated")
        context.set_trailing_metadata((("x-request-id", f"{request_id}-echo"),))
        return auth_service_pb2.ValidateResponse()


# -- the harness --------------------------------------------------------------------------


@dataclass
class Harness:
    client: aiohttp.ClientSession
    recorder: Recorder
    transcoder: Transcoder


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    recorder = Recorder()
    server = grpc.aio.server()
    sync_service_pb2_grpc.add_SyncServiceServicer_to_server(SyncServicer(recorder), server)  # type: ignore[no-untyped-call]
    client_service_pb2_grpc.add_ClientServiceServicer_to_server(ClientServicer(recorder), server)  # type: ignore[no-untyped-call]
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(recorder), server)  # type: ignore[no-untyped-call]
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                ECHO.full_name,
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(
                        _echo,
                        request_deserializer=EchoRequest.FromString,
                        response_serializer=EchoResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    config = HttpConfig(max_body_bytes=1024, cors_origins=(ORIGIN,))
    transcoder = Transcoder(
        [*contract_services(), ECHO],
        channel,
        config,
        timeout=10.0,
        stream_header_wait=0.2,
        disconnect_poll_interval=0.05,
    )
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", transcoder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http_port}") as client:
            yield Harness(client, recorder, transcoder)
    finally:
        await runner.cleanup()
        await channel.close(None)
        await server.stop(None)


async def _json(response: aiohttp.ClientResponse) -> Any:
    return json.loads(await response.read())


def _detail(body: dict[str, Any], type_url: str) -> dict[str, Any]:
    return next(d for d in body["details"] if d["@type"] == type_url)


# -- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "path", "expected"),
    [
        ("/v1/sessions", "/v1/sessions", {}),
        ("/v1/{name=sessions/*}", "/v1/sessions/abc", {("name",): "sessions/abc"}),
        ("/v1/{name=sessions/*}:revoke", "/v1/sessions/abc:revoke", {("name",): "sessions/abc"}),
        ("/v1/tokens:validate", "/v1/tokens:validate", {}),
        ("/v1/clients/{client.client_id}", "/v1/clients/c%20x", {("client", "client_id"): "c x"}),
        (
            "/v1/{name=sessions/*}/states/{mcp_server}",
            "/v1/sessions/s/states/m",
            {("name",): "sessions/s", ("mcp_server",): "m"},
        ),
        ("/v1/{path=files/**}", "/v1/files/a/b%2Fc", {("path",): "files/a/b%2Fc"}),
        ("/v1/{path=files/**}", "/v1/files", {("path",): "files"}),
        ("/v1/*/x", "/v1/anything/x", {}),
    ],
)
def test_template_matches_and_binds(
    source: str, path: str, expected: dict[tuple[str, ...], str]
) -> None:
    assert parse_template(source).match(path) == expected


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("/v1/sessions", "/v1/sessions:watch"),
        ("/v1/sessions:watch", "/v1/sessions"),
        ("/v1/{name=sessions/*}", "/v1/sessions"),
        ("/v1/{name=sessions/*}", "/v1/users/abc"),
        ("/v1/{name=sessions/*}", "/v1/sessions/"),
        ("/v1/{name=sessions/*}", "/v1/sessions/a/b"),
    ],
)
def test_template_rejects_other_paths(source: str, path: str) -> None:
    assert parse_template(source).match(path) is None


def test_template_parts() -> None:
    template: PathTemplate = parse_template("/v1/{name=sessions/*}:revoke")
    assert template.segments == ("v1", "sessions", "*")
    assert template.verb == "revoke"
    assert template.variables[0].field_path == ("name",)
    assert template.variables[0].pattern == ("sessions", "*")


@pytest.mark.parametrize(
    "source",
    ["v1/x", "/v1/{name", "/v1/{a{b}}", "/v1/**/x", "/v1/{9bad}", "/v1/{a}/{a}", "/v1/a b"],
)
def test_bad_templates_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(source)


# -- routes -------------------------------------------------------------------------------


async def test_routes_list_every_rule_most_specific_first(harness: Harness) -> None:
    routes = harness.transcoder.routes()
    assert ("GET", "/v1/{name=sessions/*}", "/chitty.auth.v1.SyncService/GetSession") in routes
    assert (
        "PATCH",
        "/v1/clients/{client.client_id}",
        "/chitty.auth.v1.ClientService/UpdateClient",
    ) in routes
    assert (
        "POST",
        "/echo:post",
        "/chitty.test.v1.EchoService/Echo",
    ) in routes  # additional binding
    names = {r.method for r in routes}
    for service in contract_services():
        for method in service.methods:
            assert f"/{service.full_name}/{method.name}" in names
    verbs = [i for i, r in enumerate(routes) if ":" in r.template.rsplit("/", 1)[-1]]
    plain = [i for i, r in enumerate(routes) if i not in verbs]
    assert max(verbs) < min(plain)


# -- binding ------------------------------------------------------------------------------


async def test_path_variable_captures_the_whole_resource_name(harness: Harness) -> None:
    async with harness.client.get("/v1/sessions/s-123") as response:
        body = await _json(response)
        assert response.status == 200
        assert response.content_type == "application/json"
    assert harness.recorder.requests["GetSession"].name == "sessions/s-123"  # type: ignore[attr-defined]
    session = body["session"]
    assert session["name"] == "sessions/s-123"
    assert session["status"] == "SESSION_STATUS_ACTIVE"
    assert session["create_time"] == "2023-11-14T22:13:20Z"
    assert session["mcp_servers"] == ["chittymcp"]
    # snake_case out, and fields without presence are emitted even when default.
    assert session["chitty_id"] == ""
    assert session["devices"] == []
    assert "chittyId" not in session


async def test_custom_verb_with_path_variable_and_empty_body(harness: Harness) -> None:
    async with harness.client.post("/v1/sessions/s-9:revoke") as response:
        body = await _json(response)
        assert response.status == 200
    assert harness.recorder.requests["RevokeSession"].name == "sessions/s-9"  # type: ignore[attr-defined]
    assert body["session"]["status"] == "SESSION_STATUS_REVOKED"


async def test_body_star_accepts_camel_and_snake_case_and_path_wins(harness: Harness) -> None:
    payload = {
        "expectedVersion": "41",
        "device_id": "laptop",
        "data": base64.b64encode(b"\x00state").decode(),
        "name": "sessions/ignored",
    }
    async with harness.client.put("/v1/sessions/s-1/states/chittymcp", json=payload) as response:
        body = await _json(response)
        assert response.status == 200
    received = harness.recorder.requests["PutSessionState"]
    assert received.name == "sessions/s-1"  # type: ignore[attr-defined]
    assert received.mcp_server == "chittymcp"  # type: ignore[attr-defined]
    assert received.expected_version == 41  # type: ignore[attr-defined]
    assert received.device_id == "laptop"  # type: ignore[attr-defined]
    assert received.data == b"\x00state"  # type: ignore[attr-defined]
    # int64 as a string, bytes as base64.
    assert body["state"]["version"] == "42"
    assert base64.b64decode(body["state"]["data"]) == b"\x00state"


async def test_body_field_with_nested_path_variable_and_field_mask_query(harness: Harness) -> None:
    payload = {
        "displayName": "Chitty Desktop",
        "grant_types": ["GRANT_TYPE_REFRESH_TOKEN"],
        "kind": 2,
    }
    async with harness.client.patch(
        "/v1/clients/app-1", params={"update_mask": "display_name,grantTypes"}, json=payload
    ) as response:
        body = await _json(response)
        assert response.status == 200
    received = harness.recorder.requests["UpdateClient"]
    assert received.client.client_id == "app-1"  # type: ignore[attr-defined]
    assert received.client.display_name == "Chitty Desktop"  # type: ignore[attr-defined]
    assert list(received.client.grant_types) == [client_pb2.GRANT_TYPE_REFRESH_TOKEN]  # type: ignore[attr-defined]
    assert list(received.update_mask.paths) == ["display_name", "grant_types"]  # type: ignore[attr-defined]
    assert body["client"]["client_id"] == "app-1"
    assert body["client"]["kind"] == "CLIENT_KIND_MCP_SERVER"


async def test_query_parameters_bind_scalars_bools_and_enums(harness: Harness) -> None:
    async with harness.client.get(
        "/v1/sessions", params={"chitty_id": "CP-1", "pageSize": "25", "include_ended": "true"}
    ) as response:
        assert response.status == 200
    received = harness.recorder.requests["ListSessions"]
    assert (received.chitty_id, received.page_size, received.include_ended) == ("CP-1", 25, True)  # type: ignore[attr-defined]
    for kind in ("CLIENT_KIND_MCP_SERVER", "2"):
        async with harness.client.get("/v1/clients", params={"kind": kind}) as response:
            assert response.status == 200
        assert harness.recorder.requests["ListClients"].kind == client_pb2.CLIENT_KIND_MCP_SERVER  # type: ignore[attr-defined]


async def test_query_parameters_bind_repeated_nested_and_timestamp_fields(harness: Harness) -> None:
    params = [
        ("tags", "a"),
        ("tags", "b"),
        ("kind", "ECHO_KIND_LOUD"),
        ("inner.count", "9007199254740993"),
        ("inner.flag", "1"),
        ("inner.kinds", "ECHO_KIND_QUIET"),
        ("inner.kinds", "1"),
        ("since", "2024-01-02T03:04:05Z"),
    ]
    async with harness.client.get("/echo/things/a/b%2Fc", params=params) as response:
        body = await _json(response)
        assert response.status == 200
    echoed = body["request"]
    assert echoed["name"] == "things/a/b%2Fc"
    assert echoed["tags"] == ["a", "b"]
    assert echoed["kind"] == "ECHO_KIND_LOUD"
    assert echoed["inner"] == {
        "count": "9007199254740993",
        "flag": True,
        "kinds": ["ECHO_KIND_QUIET", "ECHO_KIND_LOUD"],
    }
    assert echoed["since"] == "2024-01-02T03:04:05Z"


async def test_additional_binding_is_served(harness: Harness) -> None:
    async with harness.client.post(
        "/echo:post", json={"name": "x", "labels": {"k": "v"}, "inner": {"count": 3}}
    ) as response:
        body = await _json(response)
        assert response.status == 200
    assert body["request"]["labels"] == {"k": "v"}
    assert body["request"]["inner"]["count"] == "3"


@pytest.mark.parametrize(
    ("query", "field_path"),
    [
        ("bogus=1", "bogus"),
        ("labels.k=v", "labels.k"),
        ("inner=1", "inner"),
        ("kind=ECHO_KIND_LOUD&kind=ECHO_KIND_QUIET", "kind"),
        ("inner.flag=maybe", "inner.flag"),
        ("inner.count=12x", "inner.count"),
    ],
)
async def test_bad_query_parameters_are_400_naming_the_field(
    harness: Harness, query: str, field_path: str
) -> None:
    async with harness.client.get(f"/echo/things/x?{query}") as response:
        body = await _json(response)
        assert response.status == 400
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    violation = _detail(body, BAD_REQUEST)["field_violations"][0]
    assert violation["field"] == field_path


# -- request errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field_path"),
    [
        ({"token": "t", "bogus": 1}, "bogus"),
        ({"tokenUse": "NOT_A_USE"}, "tokenUse"),
        ({"required_scopes": "mcp:read"}, "required_scopes"),
    ],
)
async def test_bad_json_fields_are_400_with_the_field_path(
    harness: Harness, payload: dict[str, Any], field_path: str
) -> None:
    async with harness.client.post("/v1/tokens:validate", json=payload) as response:
        body = await _json(response)
        assert response.status == 400
    assert "Validate" not in harness.recorder.requests
    assert body["code"] == 3
    assert _detail(body, BAD_REQUEST)["field_violations"][0]["field"] == field_path
    assert _detail(body, ERROR_INFO)["domain"] == "auth.chitty.cc"


async def test_unknown_nested_json_field_names_its_path(harness: Harness) -> None:
    async with harness.client.post("/v1/sessions:sync", json={"device": {"bogus": 1}}) as response:
        body = await _json(response)
        assert response.status == 400
    assert _detail(body, BAD_REQUEST)["field_violations"][0]["field"] == "device.bogus"
    assert "device.bogus" in body["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_malformed_json_is_400(harness: Harness, raw: bytes) -> None:
    async with harness.client.post(
        "/v1/tokens:validate", data=raw, headers={"Content-Type": "application/json"}
    ) as response:
        body = await _json(response)
        assert response.status == 400
    assert body["code"] == 3
    assert body["message"]


async def test_wrong_content_type_is_415(harness: Harness) -> None:
    async with harness.client.post(
        "/v1/tokens:validate",
        data=b"token=abc",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        body = await _json(response)
        assert response.status == 415
    assert _detail(body, ERROR_INFO)["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    async with harness.client.post(
        "/v1/tokens:validate",
        data=b'{"token": "t"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    ) as response:
        assert response.status == 200


async def test_body_over_the_limit_is_413(harness: Harness) -> None:
    big = json.dumps({"token": "x" * 4096}).encode()
    async with harness.client.post(
        "/v1/tokens:validate", data=big, headers={"Content-Type": "application/json"}
    ) as response:
        body = await _json(response)
        assert response.status == 413
    assert _detail(body, ERROR_INFO)["reason"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies as read
        for _ in range(8):
            yield b" " * 512

    async with harness.client.post(
        "/v1/tokens:validate", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
    assert "Validate" not in harness.recorder.requests


async def test_unknown_path_is_404_status_json(harness: Harness) -> None:
    async with harness.client.get("/v1/nothing/here") as response:
        body = await _json(response)
        assert response.status == 404
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert _detail(body, ERROR_INFO)["reason"] == "ROUTE_NOT_FOUND"


async def test_known_path_with_wrong_method_is_405_with_allow(harness: Harness) -> None:
    async with harness.client.delete("/v1/tokens:validate") as response:
        body = await _json(response)
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert _detail(body, ERROR_INFO)["reason"] == "METHOD_NOT_ALLOWED"
    async with harness.client.delete("/v1/sessions/s/states/m") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, PUT"


# -- metadata, errors from the service ------------------------------------------------------


async def test_forwarded_headers_arrive_as_metadata_and_request_id_is_echoed(
    harness: Harness,
) -> None:
    headers = {
        "Authorization": "Bearer abc.def",
        "X-Request-Id": "req-42",
        "Cookie": "session=secret",
    }
    async with harness.client.post(
        "/v1/tokens:validate", json={"token": "t"}, headers=headers
    ) as response:
        body = await _json(response)
        assert response.status == 200
        assert response.headers["X-Request-Id"] == "req-42-echo"
    metadata = harness.recorder.metadata["Validate"]
    assert metadata["authorization"] == "Bearer abc.def"
    assert metadata["x-request-id"] == "req-42"
    assert "cookie" not in metadata
    # A default answer still says what it is.
    assert body == {
        "active": False,
        "inactive_reason": "INACTIVE_REASON_UNSPECIFIED",
        "credential_kind": "CREDENTIAL_KIND_UNSPECIFIED",
    }


async def test_not_found_maps_to_404_with_details(harness: Harness) -> None:
    async with harness.client.get("/v1/clients/missing") as response:
        body = await _json(response)
        assert response.status == 404
    assert body["code"] == 5
    assert body["message"] == "no such client"
    assert body["details"] == [
        {
            "@type": ERROR_INFO,
            "reason": "CLIENT_NOT_FOUND",
            "domain": "auth.chitty.cc",
            "metadata": {},
        }
    ]


async def test_aborted_maps_to_409_with_details(harness: Harness) -> None:
    async with harness.client.put(
        "/v1/sessions/s/states/conflict", json={"expected_version": "1"}
    ) as response:
        body = await _json(response)
        assert response.status == 409
    assert body["code"] == grpc.StatusCode.ABORTED.value[0]
    assert _detail(body, ERROR_INFO)["reason"] == "VERSION_CONFLICT"


async def test_resource_exhausted_maps_to_429_with_retry_after(harness: Harness) -> None:
    async with harness.client.post("/v1/tokens:validate", json={"token": "slow-down"}) as response:
        body = await _json(response)
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
    retry = next(d for d in body["details"] if d["@type"].endswith("RetryInfo"))
    assert retry["retry_delay"] == "1.200s"


async def test_unimplemented_service_is_501(harness: Harness) -> None:
    async with harness.client.get("/v1/signingKeys") as response:
        body = await _json(response)
        assert response.status == 501
    assert body["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_preflight_and_response_headers_for_allowed_origin(harness: Harness) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    async with harness.client.options("/v1/tokens:validate", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Access-Control-Allow-Methods"] == "POST"
        assert "authorization" in response.headers["Access-Control-Allow-Headers"]
    async with harness.client.post(
        "/v1/tokens:validate", json={}, headers={"Origin": ORIGIN}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = {"Origin": "https://evil.example"}
    async with harness.client.post("/v1/tokens:validate", json={}, headers=other) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


# -- server streams -----------------------------------------------------------------------


async def _line(response: aiohttp.ClientResponse) -> Any:
    raw = await asyncio.wait_for(response.content.readline(), timeout=5)
    return json.loads(raw) if raw else None


async def test_stream_is_ndjson_flushed_per_message(harness: Harness) -> None:
    async with harness.client.get("/v1/sessions:watch", params={"cursor": "c0"}) as response:
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        first = await _line(response)
        # The first line arrived while the servicer still holds the second one back.
        assert harness.recorder.second_sent is False
        assert first["event"]["cursor"] == "c1"
        assert first["event"]["type"] == "SESSION_EVENT_TYPE_CREATED"
        assert first["event"]["state_version"] == "7"
        harness.recorder.release_second.set()
        second = await _line(response)
        assert second["cursor"] == "c2"
        assert await _line(response) is None  # the stream ended
    assert harness.recorder.requests["WatchSessions"].cursor == "c0"  # type: ignore[attr-defined]


async def test_stream_error_before_first_message_is_an_http_error(harness: Harness) -> None:
    async with harness.client.get(
        "/v1/sessions:watch", params={"name": "sessions/missing"}
    ) as response:
        body = await _json(response)
        assert response.status == 404
    assert _detail(body, ERROR_INFO)["reason"] == "SESSION_NOT_FOUND"


async def test_stream_error_after_headers_is_a_final_error_line(harness: Harness) -> None:
    harness.recorder.release_second.set()
    async with harness.client.get("/v1/sessions:watch", params={"cursor": "fail"}) as response:
        assert response.status == 200
        lines = [json.loads(line) for line in (await response.read()).splitlines()]
    assert [line.get("cursor") for line in lines[:2]] == ["", "c2"]
    error = lines[-1]["error"]
    assert error["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert error["message"] == "store went away"
    assert len(lines) == 3


async def test_client_disconnect_cancels_the_grpc_stream(harness: Harness) -> None:
    response = await harness.client.get("/v1/sessions:watch")
    try:
        assert response.status == 200
        first = await _line(response)
        assert first["event"]["cursor"] == "c1"
    finally:
        response.close()  # drop the connection mid-stream
    await asyncio.wait_for(harness.recorder.stream_cancelled.wait(), timeout=5)
    assert harness.recorder.stream_cancelled.is_set()
    assert harness.recorder.second_sent is False
