"""The OpenAPI document: every binding of the contract, proto3 JSON schemas, a valid document."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

import chitty.auth.v1
from chittyauth.http.openapi import build_openapi, comments_from_descriptor_set
from chittyauth.http.transcoder import http_rules, parse_template, rule_pattern

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
SCHEMAS = "#/components/schemas/"


def contract_services() -> list[ServiceDescriptor]:
    services: list[ServiceDescriptor] = []
    for module in pkgutil.iter_modules(chitty.auth.v1.__path__):
        if module.name.endswith("_pb2"):
            loaded = importlib.import_module(f"chitty.auth.v1.{module.name}")
            services.extend(loaded.DESCRIPTOR.services_by_name.values())
    return services


def build(**kwargs: Any) -> dict[str, Any]:
    return build_openapi(
        contract_services(),
        title="ChittyAuth",
        version="1.2.3",
        server_url="http://127.0.0.1:8080",
        **kwargs,
    )


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (verb, path, operation)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    ]


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def test_every_rpc_appears_with_its_method_and_a_path_its_template_matches(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    services = contract_services()
    assert len(services) >= 7
    for service in services:
        for method in service.methods:
            grpc_method = f"/{service.full_name}/{method.name}"
            for rule in http_rules(method):
                http_method, source = rule_pattern(rule)
                matching = [
                    (verb, path)
                    for verb, path, operation in operations
                    if operation["x-grpc-method"] == grpc_method and verb == http_method.lower()
                ]
                assert matching, f"{grpc_method} {http_method} {source} is not documented"
                # Filling the documented path's parameters gives a path the rule serves.
                concrete = re.sub(r"\{[^}]+\}", "x", matching[0][1])
                assert parse_template(source).match(concrete) is not None, (source, concrete)


@pytest.mark.parametrize(
    ("verb", "path", "operation_id"),
    [
        ("post", "/v1/tokens:validate", "AuthService_Validate"),
        ("get", "/v1/sessions/{session}", "SyncService_GetSession"),
        ("post", "/v1/sessions/{session}:revoke", "SyncService_RevokeSession"),
        ("put", "/v1/sessions/{session}/states/{mcp_server}", "SyncService_PutSessionState"),
        ("patch", "/v1/clients/{client_id}", "ClientService_UpdateClient"),
        ("get", "/v1/sessions:watch", "SyncService_WatchSessions"),
        ("delete", "/v1/clients/{client_id}", "ClientService_DeleteClient"),
    ],
)
def test_known_bindings(document: dict[str, Any], verb: str, path: str, operation_id: str) -> None:
    assert document["paths"][path][verb]["operationId"] == operation_id


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_document_is_valid(document: dict[str, Any]) -> None:
    if importlib.util.find_spec("openapi_spec_validator") is not None:
        validator = importlib.import_module("openapi_spec_validator")
        validator.validate(document)  # raises on an invalid document
    assert document["openapi"].startswith("3.1")
    assert document["info"] == {
        "title": "ChittyAuth",
        "version": "1.2.3",
        "description": document["info"]["description"],
    }
    assert document["servers"] == [{"url": "http://127.0.0.1:8080"}]
    for verb, path, operation in _operations(document):
        assert path.startswith("/")
        assert verb in {"get", "put", "post", "delete", "patch"}
        assert operation["responses"]["200"]["content"]
        for parameter in operation.get("parameters", []):
            assert {"name", "in", "schema"} <= parameter.keys()
            if parameter["in"] == "path":
                assert parameter["required"] is True
                assert "{" + parameter["name"] + "}" in path
    # Every reference resolves inside the document.
    for ref in _refs(document):
        section, _, name = ref.removeprefix("#/components/").partition("/")
        assert name in document["components"][section], ref


def test_schemas_follow_the_proto3_json_mapping(document: dict[str, Any]) -> None:
    state = _schema(document, "chitty.auth.v1.SessionState")["properties"]
    assert state["version"] == {"type": "string", "format": "int64"}
    assert state["data"]["format"] == "byte"
    assert state["update_time"] == {"type": "string", "format": "date-time"}
    session = _schema(document, "chitty.auth.v1.Session")["properties"]
    assert session["status"] == {"$ref": SCHEMAS + "chitty.auth.v1.SessionStatus"}
    assert session["devices"] == {
        "type": "array",
        "items": {"$ref": SCHEMAS + "chitty.auth.v1.Device"},
    }
    status_enum = _schema(document, "chitty.auth.v1.SessionStatus")
    assert status_enum["type"] == "string"
    assert "SESSION_STATUS_ACTIVE" in status_enum["enum"]
    claims = _schema(document, "chitty.auth.v1.TokenClaims")["properties"]
    assert claims["extra_claims"] == {"type": "object", "additionalProperties": True}
    audit = _schema(document, "chitty.auth.v1.AuditEvent")["properties"]
    assert audit["attributes"] == {"type": "object", "additionalProperties": {"type": "string"}}
    listing = _schema(document, "chitty.auth.v1.ListSessionsRequest")["properties"]
    assert listing["page_size"] == {"type": "integer", "format": "int32"}
    update = _schema(document, "chitty.auth.v1.UpdateClientRequest")["properties"]
    assert update["update_mask"]["type"] == "string"
    credential = _schema(document, "chitty.auth.v1.AuthenticateRequest")["properties"]["portal"]
    assert "At most one of" in credential["description"]


def test_request_bodies_and_query_parameters(document: dict[str, Any]) -> None:
    listing = document["paths"]["/v1/sessions"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "chitty_id",
        "page_size",
        "page_token",
        "include_ended",
    }
    assert "requestBody" not in listing
    update = document["paths"]["/v1/clients/{client_id}"]["patch"]
    [client_id] = [p for p in update["parameters"] if p["in"] == "path"]
    assert (client_id["name"], client_id["x-proto-field"]) == ("client_id", "client.client_id")
    assert update["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": SCHEMAS + "chitty.auth.v1.Client"
    }
    assert [p["name"] for p in update["parameters"] if p["in"] == "query"] == ["update_mask"]
    put = document["paths"]["/v1/sessions/{session}/states/{mcp_server}"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(body) == {"data", "expected_version", "device_id"}  # path fields are not repeated
    session = next(p for p in put["parameters"] if p["name"] == "session")
    assert session["x-proto-field"] == "name"
    audit = document["paths"]["/v1/auditEvents"]["get"]
    assert any(
        p["name"] == "start_time" and p["schema"]["format"] == "date-time"
        for p in audit["parameters"]
    )


def test_streams_are_ndjson_and_errors_are_status(document: dict[str, Any]) -> None:
    watch = document["paths"]["/v1/sessions:watch"]["get"]["responses"]
    line = watch["200"]["content"]["application/x-ndjson"]["schema"]
    assert line["oneOf"][0] == {"$ref": SCHEMAS + "chitty.auth.v1.WatchSessionsResponse"}
    assert watch["default"] == {"$ref": "#/components/responses/Error"}
    error = document["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "google.rpc.Status"}
    assert "Retry-After" in error["headers"]
    status = _schema(document, "google.rpc.Status")["properties"]
    assert status["code"]["type"] == "integer"
    assert status["details"]["items"]["required"] == ["@type"]
    assert "google.rpc.ErrorInfo" in document["components"]["schemas"]
    bearer = document["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert {"bearerAuth": []} in document["security"]


def test_summaries_come_from_method_names_without_source_info(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/sessions/{session}/states/{mcp_server}"]["get"]
    assert operation["summary"] == "Get session state"
    assert "description" not in operation


def test_summaries_come_from_proto_comments_with_a_descriptor_set(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    include = Path(protoc.__file__).parent / "_proto"
    output = tmp_path / "contract.pb"
    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "chitty").rglob("*.proto"))
    status = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={output}",
            *files,
        ]
    )
    assert status == 0
    comments = comments_from_descriptor_set(
        descriptor_pb2.FileDescriptorSet.FromString(output.read_bytes())
    )
    assert comments["chitty.auth.v1.SyncService.GetSession"] == "Returns one session."
    document = build(comments=comments)
    get_session = document["paths"]["/v1/sessions/{session}"]["get"]
    assert get_session["summary"] == "Returns one session."
    assert get_session["description"] == "Returns one session."
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert tags["SyncService"] == "A person's sessions across devices and MCP servers."
    state = _schema(document, "chitty.auth.v1.SessionState")
    assert state["properties"]["version"]["description"].startswith("Incremented by each")
    assert (
        "- `SESSION_STATUS_ACTIVE`: In use."
        in _schema(document, "chitty.auth.v1.SessionStatus")["description"]
    )
