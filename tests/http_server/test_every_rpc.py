"""Every RPC's HTTP rule, against the real server: the shim answers what gRPC answers.

Each unary RPC is called twice with the same (minimal) request and the same admin token —
once over gRPC, once through its google.api.http binding — and the HTTP status must be the
gRPC status mapped through the google.rpc.Code table. Reads must also return the same body.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc import aio

from chittyauth.app import Server
from chittyauth.http.status import HTTP_STATUS_BY_CODE
from chittyauth.http.transcoder import http_rules, rule_pattern
from chittyauth.rpc.services import ALL_SERVICES
from tests.conftest import bearer

VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")

UNARY = [
    (spec.full_name, method)
    for spec in ALL_SERVICES
    for method in spec.descriptor.methods
    if not method.server_streaming
]


def fill_path(template: str) -> tuple[str, dict[str, str]]:
    """The path with every variable set to a probe value, and those values by field path."""
    bound: dict[str, str] = {}

    def value(match: re.Match[str]) -> str:
        field, pattern = match.group(1), match.group(2)
        text = pattern.replace("*", "probe") if pattern else "probe"
        bound[field] = text
        return text

    return VARIABLE.sub(value, template), bound


def set_field(message: Any, path: str, value: str) -> None:
    *parents, last = path.split(".")
    for name in parents:
        message = getattr(message, name)
    setattr(message, last, value)


@pytest.mark.parametrize(
    ("service", "method"), UNARY, ids=[f"{m.containing_service.name}.{m.name}" for _, m in UNARY]
)
async def test_http_binding_answers_like_grpc(
    server: Server,
    channel: aio.Channel,
    admin_token: str,
    service: str,
    method: MethodDescriptor,
) -> None:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    verb, template = rule_pattern(http_rules(method)[0])
    path, bound = fill_path(template)
    request = request_class()
    for field, value in bound.items():
        set_field(request, field, value)

    call = channel.unary_unary(
        f"/{service}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        grpc_reply = await call(request, metadata=bearer(admin_token))
        grpc_code = grpc.StatusCode.OK
    except aio.AioRpcError as error:
        grpc_reply, grpc_code = None, error.code()

    url = f"http://127.0.0.1:{server.http_port}{path}"
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession() as http:
        body = {} if verb.upper() in ("POST", "PUT", "PATCH") else None
        async with http.request(verb.upper(), url, json=body, headers=headers) as response:
            status = response.status
            payload = await response.json()

    assert status == HTTP_STATUS_BY_CODE[grpc_code], (status, grpc_code, payload)
    assert status != 500
    if grpc_code == grpc.StatusCode.OK and verb.upper() == "GET" and grpc_reply is not None:
        expected = json_format.MessageToDict(
            grpc_reply,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        assert payload == expected
    if grpc_code != grpc.StatusCode.OK:
        assert payload["code"] == grpc_code.value[0]
        assert payload["message"]
