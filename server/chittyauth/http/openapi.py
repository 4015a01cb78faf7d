"""An OpenAPI 3.1 document for the transcoded routes, from the same descriptors and rules.

Nothing here is written per RPC: paths come from each method's ``google.api.http`` rules
(additional bindings included), schemas from the message descriptors in their proto3 JSON
form, exactly as the transcoder reads and writes them (snake_case names, int64 as strings,
enums by name, Timestamp as date-time, Duration as ``"1.5s"``, bytes as base64).

Summaries and descriptions come from the proto comments when the descriptors carry source
info (they do not when loaded from generated ``*_pb2`` modules) or when ``comments`` is given
(see :func:`comments_from_descriptor_set`); otherwise a summary is derived from the method name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.rpc import error_details_pb2, status_pb2

from chittyauth.http.transcoder import (
    MULTI_WILDCARD,
    NDJSON_CONTENT_TYPE,
    WILDCARD,
    PathTemplate,
    TemplateError,
    http_rules,
    parse_template,
    resolve_field_path,
    rule_pattern,
)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
_STATUS = "google.rpc.Status"
_OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_QUERY_DEPTH = 3  # how deep nested messages are unrolled into dotted query parameters

_INT64 = {"type": "string", "format": "int64"}
_UINT64 = {"type": "string", "format": "uint64"}
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "uint32", "minimum": 0}
_BYTES = {"type": "string", "format": "byte", "contentEncoding": "base64"}
_SCALARS: Mapping[int, Mapping[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: _BYTES,
}
_WRAPPED: Mapping[str, Mapping[str, Any]] = {
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": _BYTES,
}
_WELL_KNOWN: Mapping[str, Mapping[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with an `s` suffix, e.g. `3.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, e.g. `displayName,redirectUris`.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string", "description": "The type URL."}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    **{name: {**schema, "type": [schema["type"], "null"]} for name, schema in _WRAPPED.items()},
}


def build_openapi(
    services: Sequence[ServiceDescriptor],
    *,
    title: str,
    version: str,
    server_url: str,
    comments: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every ``google.api.http`` binding of ``services``.

    Args:
        services: The service descriptors (``module.DESCRIPTOR.services_by_name``).
        title: ``info.title``.
        version: ``info.version``.
        server_url: The base URL of the HTTP shim (``servers[0].url``).
        comments: Proto comments by full name (service, method, message, field, enum, enum
            value); merged over whatever source info the descriptors carry.

    Returns:
        The document as a JSON-ready dict.

    Raises:
        TemplateError: a rule's template is invalid, or two bindings give the same operation.
    """
    builder = _Builder(_collect_comments(services, comments or {}))
    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, str]] = []
    for service in services:
        tags.append({"name": service.name, "description": builder.doc(service.full_name)})
        for message in _file_types(service.file):
            builder.register(message)
        for method in service.methods:
            if method.client_streaming:
                continue  # not transcoded
            for index, rule in enumerate(http_rules(method)):
                http_method, source = rule_pattern(rule)
                verb = http_method.lower()
                if verb not in _OPERATIONS:
                    continue  # a custom kind OpenAPI cannot express
                path, operation = builder.operation(service, method, rule, source, index)
                item = paths.setdefault(path, {})
                if verb in item:
                    raise TemplateError(f"{http_method} {path} is bound twice")
                item[verb] = operation
    for extra in (status_pb2.Status, *_ERROR_DETAILS):
        builder.register(extra.DESCRIPTOR)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "HTTP/JSON transcoding of the gRPC API (google.api.http). Requests accept "
                "snake_case and lowerCamelCase field names; responses use snake_case and "
                "include fields at their default values. Errors are google.rpc.Status JSON."
            ),
        },
        "servers": [{"url": server_url}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": {"Error": _error_response()},
            "headers": _HEADERS,
            "securitySchemes": _SECURITY_SCHEMES,
        },
        # Each RPC decides what it needs; `{}` says an operation may also be called without.
        "security": [{"bearerAuth": []}, {"cloudflareAccess": []}, {}],
    }


def comments_from_descriptor_set(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> dict[str, str]:
    """Leading comments by full name, from a set built with ``protoc --include_source_info``."""
    found: dict[str, str] = {}
    for file in descriptor_set.file:
        found.update(_file_comments(file))
    return found


# -- comments -----------------------------------------------------------------------------


def _collect_comments(
    services: Iterable[ServiceDescriptor], given: Mapping[str, str]
) -> dict[str, str]:
    found: dict[str, str] = {}
    for file in {service.file.name: service.file for service in services}.values():
        proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
        found.update(_file_comments(proto))
    found.update(given)
    return found


def _file_comments(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    names: dict[tuple[int, ...], str] = {}
    # Paths are field numbers in descriptor.proto: FileDescriptorProto.message_type = 4,
    # enum_type = 5, service = 6; DescriptorProto.field = 2, nested_type = 3, enum_type = 4;
    # EnumDescriptorProto.value = 2; ServiceDescriptorProto.method = 2.

    def add_enum(enum: Any, path: tuple[int, ...], scope: str) -> None:
        names[path] = f"{scope}.{enum.name}"
        for index, value in enumerate(enum.value):
            names[(*path, 2, index)] = f"{scope}.{value.name}"

    def add_message(message: Any, path: tuple[int, ...], scope: str) -> None:
        full_name = f"{scope}.{message.name}"
        names[path] = full_name
        for index, field in enumerate(message.field):
            names[(*path, 2, index)] = f"{full_name}.{field.name}"
        for index, nested in enumerate(message.nested_type):
            add_message(nested, (*path, 3, index), full_name)
        for index, enum in enumerate(message.enum_type):
            add_enum(enum, (*path, 4, index), full_name)

    for index, message in enumerate(proto.message_type):
        add_message(message, (4, index), proto.package)
    for index, enum in enumerate(proto.enum_type):
        add_enum(enum, (5, index), proto.package)
    for index, service in enumerate(proto.service):
        names[(6, index)] = f"{proto.package}.{service.name}"
        for method_index, method in enumerate(service.method):
            names[(6, index, 2, method_index)] = f"{proto.package}.{service.name}.{method.name}"
    comments: dict[str, str] = {}
    for location in proto.source_code_info.location:
        name = names.get(tuple(location.path))
        text = " ".join(line.strip() for line in location.leading_comments.splitlines()).strip()
        if name and text:
            comments[name] = text
    return comments


def _summary_from_name(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", name).split()
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else name


# -- schemas and operations -----------------------------------------------------------------


class _Builder:
    def __init__(self, comments: Mapping[str, str]) -> None:
        self._comments = comments
        self.schemas: dict[str, Any] = {}

    def doc(self, full_name: str) -> str:
        return self._comments.get(full_name, "")

    def register(self, message: Descriptor | EnumDescriptor) -> None:
        """Add the component schema of a message or enum and of every type it uses."""
        if message.full_name in self.schemas or message.full_name in _WELL_KNOWN:
            return
        if isinstance(message, EnumDescriptor):
            self.schemas[message.full_name] = self._enum_schema(message)
            return
        if message.GetOptions().map_entry:
            return
        self.schemas[message.full_name] = {}  # placeholder: stops recursion on cycles
        self.schemas[message.full_name] = self._message_schema(message)

    def ref(self, message: Descriptor | EnumDescriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        self.register(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def field_schema(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            if field.enum_type.full_name == "google.protobuf.NullValue":
                return {"type": "null"}
            return self.ref(field.enum_type)
        return dict(_SCALARS[field.type])

    def _message_schema(
        self, message: Descriptor, exclude: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for field in message.fields:
            if field.name in exclude:
                continue
            schema = self.field_schema(field)
            text = self.doc(field.full_name)
            oneof = field.containing_oneof
            if oneof is not None and not _is_synthetic(field):
                members = ", ".join(f"`{f.name}`" for f in oneof.fields)
                text = f"{text} At most one of {members}.".strip()
            if text:
                schema["description"] = text
            properties[field.name] = schema
        schema = {"type": "object", "properties": properties}
        if self.doc(message.full_name):
            schema["description"] = self.doc(message.full_name)
        return schema

    def _enum_schema(self, enum: EnumDescriptor) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.values]}
        lines = [self.doc(enum.full_name)] if self.doc(enum.full_name) else []
        scope = enum.full_name.rsplit(".", 1)[0]
        for value in enum.values:
            text = self.doc(f"{scope}.{value.name}")
            if text:
                lines.append(f"- `{value.name}`: {text}")
        if lines:
            schema["description"] = "\n".join(lines)
        return schema

    def operation(
        self,
        service: ServiceDescriptor,
        method: MethodDescriptor,
        rule: Any,
        source: str,
        index: int,
    ) -> tuple[str, dict[str, Any]]:
        template = parse_template(source)
        request = method.input_type
        path, parameters, bound = self._path(template, request)
        comment = self.doc(method.full_name)
        operation: dict[str, Any] = {
            "operationId": f"{service.name}_{method.name}" + (f"_{index}" if index else ""),
            "summary": _first_sentence(comment) or _summary_from_name(method.name),
            "tags": [service.name],
            "x-grpc-method": f"/{service.full_name}/{method.name}",
        }
        if comment:
            operation["description"] = comment
        body = str(rule.body)
        if body != "*":
            excluded = {body} if body else set()
            parameters.extend(self._query(request, bound, excluded))
        if parameters:
            operation["parameters"] = parameters
        if body:
            operation["requestBody"] = self._request_body(request, body, bound)
        operation["responses"] = {
            "200": self._success(method, str(rule.response_body)),
            "default": {"$ref": "#/components/responses/Error"},
        }
        return path, operation

    def _path(
        self, template: PathTemplate, request: Descriptor
    ) -> tuple[str, list[dict[str, Any]], set[tuple[str, ...]]]:
        parts: list[str] = []
        parameters: list[dict[str, Any]] = []
        bound: set[tuple[str, ...]] = set()
        taken: set[str] = set()
        starts = {variable.start: variable for variable in template.variables}
        position = 0
        while position < len(template.segments):
            variable = starts.get(position)
            if variable is None:
                segment = template.segments[position]
                if segment in (WILDCARD, MULTI_WILDCARD):
                    name = _unique("segment", taken)
                    parts.append(f"{{{name}}}")
                    parameters.append(_path_parameter(name, {"type": "string"}, ""))
                else:
                    parts.append(segment)
                position += 1
                continue
            dotted = ".".join(variable.field_path)
            bound.add(variable.field_path)
            field = resolve_field_path(request, variable.field_path)[-1]
            text = self.doc(field.full_name)
            if variable.pattern in ((WILDCARD,), (MULTI_WILDCARD,)):
                # A nested field (`client.client_id`) is named by its last part: OpenAPI
                # tools do not all accept dots in path parameter names.
                name = _unique(variable.field_path[-1], taken)
                parts.append(f"{{{name}}}")
                extra = " May contain `/`." if variable.pattern == (MULTI_WILDCARD,) else ""
                parameter = _path_parameter(name, self._single(field), text + extra)
                if name != dotted:
                    parameter["x-proto-field"] = dotted
                parameters.append(parameter)
            else:
                names = [
                    _unique(_singular(previous) or f"{dotted}_part", taken)
                    if segment in (WILDCARD, MULTI_WILDCARD)
                    else ""
                    for previous, segment in zip(
                        ("", *variable.pattern), variable.pattern, strict=False
                    )
                ]
                shown = "/".join(
                    f"{{{name}}}" if name else segment
                    for name, segment in zip(names, variable.pattern, strict=True)
                )
                parts.append(shown)
                for name in filter(None, names):
                    note = f"The `{{{name}}}` part of `{dotted}` (`{shown}`)."
                    parameter = _path_parameter(name, {"type": "string"}, note)
                    parameter["x-proto-field"] = dotted
                    parameters.append(parameter)
            position = variable.end
        path = "/" + "/".join(parts) + (f":{template.verb}" if template.verb else "")
        return path, parameters, bound

    def _query(
        self, request: Descriptor, bound: set[tuple[str, ...]], excluded: set[str]
    ) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = []
        for names, field in _query_fields(request, (), frozenset()):
            if names in bound or names[0] in excluded:
                continue
            parameter: dict[str, Any] = {
                "name": ".".join(names),
                "in": "query",
                "required": False,
                "schema": self.field_schema(field),
            }
            if field.is_repeated:
                parameter.update(style="form", explode=True)
            if self.doc(field.full_name):
                parameter["description"] = self.doc(field.full_name)
            parameters.append(parameter)
        return parameters

    def _request_body(
        self, request: Descriptor, body: str, bound: set[tuple[str, ...]]
    ) -> dict[str, Any]:
        if body == "*":
            top_level = frozenset(path[0] for path in bound if len(path) == 1)
            schema = (
                self._message_schema(request, exclude=top_level) if top_level else self.ref(request)
            )
            required = False  # an empty body is an empty message
        else:
            schema = self.field_schema(request.fields_by_name[body])
            required = True
        return {"required": required, "content": {JSON: {"schema": schema}}}

    def _success(self, method: MethodDescriptor, response_body: str) -> dict[str, Any]:
        output = method.output_type
        schema = (
            self.field_schema(output.fields_by_name[response_body])
            if response_body
            else self.ref(output)
        )
        headers = {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}}
        if not method.server_streaming:
            return {"description": "OK", "headers": headers, "content": {JSON: {"schema": schema}}}
        line = {
            "oneOf": [
                schema,
                {
                    "type": "object",
                    "properties": {"error": {"$ref": f"#/components/schemas/{_STATUS}"}},
                    "required": ["error"],
                },
            ]
        }
        return {
            "description": (
                "A stream: one JSON object per line, each written as the server sends it. "
                'An error after the first line ends the stream as a final `{"error": …}` line.'
            ),
            "headers": headers,
            "content": {NDJSON_CONTENT_TYPE: {"schema": line}},
        }


def _query_fields(
    message: Descriptor, prefix: tuple[str, ...], seen: frozenset[str]
) -> Iterable[tuple[tuple[str, ...], FieldDescriptor]]:
    """Fields that can be set from the query string, with their dotted paths."""
    for field in message.fields:
        names = (*prefix, field.name)
        nested = field.message_type
        if nested is None or nested.full_name in _WELL_KNOWN:
            if nested is None or nested.full_name in _WRAPPED or _is_string_form(nested):
                yield names, field
            continue
        if (
            nested.GetOptions().map_entry
            or field.is_repeated
            or nested.full_name in seen
            or len(names) >= _QUERY_DEPTH
        ):
            continue
        yield from _query_fields(nested, names, seen | {message.full_name})


def _is_string_form(message: Descriptor) -> bool:
    return message.full_name in (
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
    )


def _is_synthetic(field: FieldDescriptor) -> bool:
    # A proto3 `optional` field lives in a one-member oneof named `_<field>`.
    oneof = field.containing_oneof
    return oneof is not None and oneof.name == f"_{field.name}" and len(oneof.fields) == 1


def _path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        parameter["description"] = description.strip()
    return parameter


def _singular(word: str) -> str:
    if word in (WILDCARD, MULTI_WILDCARD):
        return ""
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _unique(name: str, taken: set[str]) -> str:
    candidate = name
    counter = 2
    while candidate in taken:
        candidate = f"{name}{counter}"
        counter += 1
    taken.add(candidate)
    return candidate


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def _file_types(file: FileDescriptor) -> list[Descriptor | EnumDescriptor]:
    types: list[Descriptor | EnumDescriptor] = [*file.enum_types_by_name.values()]
    pending = list(file.message_types_by_name.values())
    while pending:
        message = pending.pop()
        types.append(message)
        types.extend(message.enum_types)
        pending.extend(message.nested_types)
    return types


_ERROR_DETAILS = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.BadRequest,
)

_HEADERS = {
    "XRequestId": {
        "description": "The request id, for support and logs.",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying (from a google.rpc.RetryInfo detail).",
        "schema": {"type": "integer", "minimum": 0},
    },
}

_SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token (RFC 9068 JWT) or an API key.",
    },
    "cloudflareAccess": {
        "type": "apiKey",
        "in": "header",
        "name": "Cf-Access-Jwt-Assertion",
        "description": "The Cloudflare Access assertion, for portal logins.",
    },
}


def _error_response() -> dict[str, Any]:
    return {
        "description": (
            "An error: google.rpc.Status JSON; the HTTP status follows the google.rpc.Code "
            "table (e.g. NOT_FOUND 404, ABORTED 409, RESOURCE_EXHAUSTED 429)."
        ),
        "headers": {
            "X-Request-Id": {"$ref": "#/components/headers/XRequestId"},
            "Retry-After": {"$ref": "#/components/headers/RetryAfter"},
        },
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{_STATUS}"}}},
    }
