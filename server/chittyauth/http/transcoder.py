"""google.api.http transcoding: an HTTP/JSON request becomes a gRPC call of the same RPC.

Built once from the service descriptors; no code per RPC. Each method's ``google.api.http``
rule (and its ``additional_bindings``) is compiled into a route. A request that matches one is
turned into the method's request message and sent over a ``grpc.aio`` channel to the service's
own gRPC port, so it passes through the same interceptors (authentication, rate limits,
metrics) as any gRPC caller; the shim never re-implements a rule. The HTTP caller's true
address travels with the call in metadata the gRPC side believes only from this shim
(``rpc/forwarded.py``), so rate limits are charged to the caller, not to 127.0.0.1.

Path templates follow the google.api.http grammar::

    Template = "/" Segments [ ":" Verb ]      Segment  = "*" | "**" | LITERAL | Variable
    Variable = "{" FieldPath [ "=" Segments ] "}"

``{name=sessions/*}`` binds the whole matched part (``sessions/abc``); ``{client.client_id}``
binds a nested field; ``**`` (last segment only) matches zero or more segments, and a
multi-segment variable keeps ``%2F`` encoded, as the spec asks.

Binding: path variables win over everything; ``body: "*"`` fills the rest from the JSON body
(query parameters are then ignored, as the spec says); ``body: "field"`` fills that field and
any other field may come from the query string (dotted names for nested fields, a repeated
field as repeated parameters, enums by name or number, bools as true/false/1/0). An unknown
query parameter or JSON field is a 400 naming it. JSON is read and written by protobuf
json_format: both snake_case and lowerCamelCase are accepted, snake_case is emitted, int64 as
strings, enums by name, Timestamp/Duration in their string forms and bytes as base64. Fields
without presence are always emitted (``"active": false``), so a caller never has to know the
proto3 default of a field it reads.

Server-streaming RPCs are answered with ``application/x-ndjson``: one JSON object per line,
written as each message arrives. An error before the first message is an ordinary HTTP error;
after the headers are out it is a final ``{"error": {...}}`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from aiohttp import web
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from multidict import MultiMapping

from chittyauth.config import HttpConfig
from chittyauth.domain.errors import DomainError
from chittyauth.http import status as rpc_http
from chittyauth.http.errors import header_text, parse_json, request_id_of, source_address_of
from chittyauth.http.status import HttpError
from chittyauth.rpc.forwarded import RESERVED_KEYS, forwarded_metadata

JSON_CONTENT_TYPE = "application/json"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
DEFAULT_TIMEOUT_S = 30.0

_REQUEST_ID_KEY = rpc_http.REQUEST_ID_KEY

WILDCARD = "*"
MULTI_WILDCARD = "**"

# Well-known message types whose proto3 JSON form is a string, so a path or query value can
# carry them.
_STRING_FORM_TYPES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()+,;=@%-]+")
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


# -- path templates -----------------------------------------------------------------------


class TemplateError(ValueError):
    """A google.api.http path template does not follow the grammar."""


@dataclass(frozen=True)
class Variable:
    """A ``{field.path=pattern}`` of a template, over ``segments[start:end]``."""

    field_path: tuple[str, ...]
    start: int
    end: int
    pattern: tuple[str, ...]

    @property
    def multi_segment(self) -> bool:
        """True when the variable can span more than one path segment."""
        return len(self.pattern) > 1 or MULTI_WILDCARD in self.pattern


@dataclass(frozen=True)
class PathTemplate:
    """A compiled path template: literal and wildcard segments, variables and a verb."""

    source: str
    segments: tuple[str, ...]
    variables: tuple[Variable, ...]
    verb: str

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key: a verb, then more literal segments, then fewer ``**`` win a tie."""
        literals = sum(1 for s in self.segments if s not in (WILDCARD, MULTI_WILDCARD))
        return (1 if self.verb else 0, literals, -self.segments.count(MULTI_WILDCARD))

    def match(self, raw_path: str) -> dict[tuple[str, ...], str] | None:
        """The variables' values if ``raw_path`` (still percent-encoded) matches, else None."""
        if not raw_path.startswith("/"):
            return None
        rest = raw_path[1:]
        if self.verb:
            suffix = ":" + self.verb
            if not rest.endswith(suffix):
                return None
            rest = rest[: -len(suffix)]
        parts = rest.split("/")
        count = len(self.segments)
        open_ended = count > 0 and self.segments[-1] == MULTI_WILDCARD
        if (open_ended and len(parts) < count - 1) or (not open_ended and len(parts) != count):
            return None
        for segment, part in zip(self.segments, parts, strict=False):
            if segment == MULTI_WILDCARD:
                break
            if segment == WILDCARD:
                if not part:
                    return None
            elif urllib.parse.unquote(part) != segment:
                return None
        values: dict[tuple[str, ...], str] = {}
        for variable in self.variables:
            end = len(parts) if variable.pattern[-1] == MULTI_WILDCARD else variable.end
            matched = parts[variable.start : end]
            if variable.multi_segment:
                values[variable.field_path] = "/".join(_unquote_keep_slash(p) for p in matched)
            else:
                values[variable.field_path] = urllib.parse.unquote(matched[0])
        return values


def parse_template(source: str) -> PathTemplate:
    """Compile a google.api.http path template.

    Raises:
        TemplateError: naming what is wrong with ``source``.
    """
    if not source.startswith("/"):
        raise TemplateError(f"{source!r}: a template starts with '/'")
    body, verb = _split_verb(source[1:])
    if verb and not _LITERAL.fullmatch(verb):
        raise TemplateError(f"{source!r}: bad verb {verb!r}")
    segments: list[str] = []
    variables: list[Variable] = []
    for token in _split_top_level(body, source):
        if token.startswith("{"):
            if not token.endswith("}"):
                raise TemplateError(f"{source!r}: unclosed variable {token!r}")
            name, has_pattern, pattern = token[1:-1].partition("=")
            if not _FIELD_PATH.fullmatch(name):
                raise TemplateError(f"{source!r}: bad field path {name!r}")
            pattern_segments = pattern.split("/") if has_pattern else [WILDCARD]
            for segment in pattern_segments:
                _check_segment(segment, source)
            start = len(segments)
            segments.extend(pattern_segments)
            field_path = tuple(name.split("."))
            if any(v.field_path == field_path for v in variables):
                raise TemplateError(f"{source!r}: {name} is bound twice")
            variables.append(Variable(field_path, start, len(segments), tuple(pattern_segments)))
        else:
            _check_segment(token, source)
            segments.append(token)
    if MULTI_WILDCARD in segments[:-1]:
        raise TemplateError(f"{source!r}: '**' must be the last segment")
    return PathTemplate(source, tuple(segments), tuple(variables), verb)


def _split_verb(body: str) -> tuple[str, str]:
    # The verb is a ':' in the last segment, outside any variable.
    depth = 0
    colon = -1
    for index, char in enumerate(body):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0 and char == "/":
            colon = -1
        elif depth == 0 and char == ":":
            colon = index
    if colon < 0:
        return body, ""
    return body[:colon], body[colon + 1 :]


def _split_top_level(body: str, source: str) -> list[str]:
    tokens: list[str] = []
    depth = 0
    current = ""
    for char in body:
        if char == "{":
            depth += 1
            if depth > 1:
                raise TemplateError(f"{source!r}: nested variables")
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"{source!r}: unbalanced '}}'")
        if char == "/" and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise TemplateError(f"{source!r}: unclosed variable")
    tokens.append(current)
    return tokens


def _check_segment(segment: str, source: str) -> None:
    if segment not in (WILDCARD, MULTI_WILDCARD) and not _LITERAL.fullmatch(segment):
        raise TemplateError(f"{source!r}: bad segment {segment!r}")


def _unquote_keep_slash(part: str) -> str:
    # A multi-segment variable keeps an encoded '/' encoded (google.api.http, "Path template
    # syntax"): it is data, not a separator.
    return urllib.parse.unquote(re.sub("%2[Ff]", "%252F", part))


# -- rules ------------------------------------------------------------------------------


def http_rules(method: MethodDescriptor) -> list[Any]:
    """The method's ``google.api.HttpRule`` and its additional bindings, in order."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def rule_pattern(rule: Any) -> tuple[str, str]:
    """(HTTP method in upper case, path template) of a ``google.api.HttpRule``."""
    kind = rule.WhichOneof("pattern")
    if kind in _HTTP_METHODS:
        return kind.upper(), str(getattr(rule, kind))
    if kind == "custom":
        return str(rule.custom.kind).upper(), str(rule.custom.path)
    raise TemplateError(f"HttpRule without a pattern: {rule}")


def resolve_field_path(message: Descriptor, names: Sequence[str]) -> list[FieldDescriptor]:
    """The fields along a dotted path; each name is the proto name or its lowerCamelCase.

    Raises:
        KeyError: naming the first part that is not a field, or that descends into a
            non-message, repeated or map field.
    """
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for position, name in enumerate(names):
        if current is None:
            raise KeyError(".".join(names[:position]))
        found = current.fields_by_name.get(name) or _by_json_name(current, name)
        if found is None:
            raise KeyError(".".join(names[: position + 1]))
        fields.append(found)
        is_last = position == len(names) - 1
        if not is_last and (
            found.type != FieldDescriptor.TYPE_MESSAGE or _is_repeated(found) or _is_map(found)
        ):
            raise KeyError(".".join(names[: position + 1]))
        current = found.message_type
    return fields


def _by_json_name(message: Descriptor, name: str) -> FieldDescriptor | None:
    for candidate in message.fields:
        if candidate.json_name == name:
            return candidate
    return None


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _message_type_name(field: FieldDescriptor) -> str:
    """The full name of a message field's type, ``""`` for any other field."""
    return field.message_type.full_name if field.message_type is not None else ""


# -- routes -----------------------------------------------------------------------------


class RouteInfo(NamedTuple):
    """One transcoded route, for docs and tests."""

    http_method: str
    template: str
    method: str


@dataclass(frozen=True)
class _Method:
    path: str  # "/chitty.auth.v1.SyncService/GetSession"
    descriptor: MethodDescriptor
    request_class: type[Message]
    unary: grpc.aio.UnaryUnaryMultiCallable[Message, Message] | None
    stream: grpc.aio.UnaryStreamMultiCallable[Message, Message] | None


@dataclass(frozen=True)
class _Route:
    http_method: str
    template: PathTemplate
    body: str  # "", "*" or a top-level field name
    response_body: str
    method: _Method
    bound_fields: Mapping[tuple[str, ...], tuple[FieldDescriptor, ...]]


class _Rejected(Exception):
    """The request cannot be transcoded; ``error`` is the answer."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.body.get("message", ""))
        self.error = error


def _compile(services: Sequence[ServiceDescriptor], channel: grpc.aio.Channel) -> list[_Route]:
    routes: list[_Route] = []
    seen: dict[tuple[str, tuple[str, ...], str], str] = {}
    for service in services:
        for descriptor in service.methods:
            if descriptor.client_streaming:
                continue  # no HTTP mapping for client streams; the contract has none
            method = _bind_method(service, descriptor, channel)
            for rule in http_rules(descriptor):
                route = _route(rule, method)
                key = (route.http_method, route.template.segments, route.template.verb)
                if key in seen:
                    raise TemplateError(
                        f"{route.http_method} {route.template.source} of {method.path} "
                        f"clashes with {seen[key]}"
                    )
                seen[key] = method.path
                routes.append(route)
    # Most specific first, so a verb route wins over a variable that would swallow the verb.
    routes.sort(key=lambda r: r.template.specificity, reverse=True)
    return routes


def _bind_method(
    service: ServiceDescriptor, descriptor: MethodDescriptor, channel: grpc.aio.Channel
) -> _Method:
    path = f"/{service.full_name}/{descriptor.name}"
    request_class = message_factory.GetMessageClass(descriptor.input_type)
    response_class = message_factory.GetMessageClass(descriptor.output_type)
    serializer = request_class.SerializeToString
    if descriptor.server_streaming:
        stream = channel.unary_stream(
            path, request_serializer=serializer, response_deserializer=response_class.FromString
        )
        return _Method(path, descriptor, request_class, None, stream)
    unary = channel.unary_unary(
        path, request_serializer=serializer, response_deserializer=response_class.FromString
    )
    return _Method(path, descriptor, request_class, unary, None)


def _route(rule: Any, method: _Method) -> _Route:
    http_method, source = rule_pattern(rule)
    where = f"{method.path} ({http_method} {source})"
    try:
        template = parse_template(source)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from exc
    request = method.descriptor.input_type
    bound: dict[tuple[str, ...], tuple[FieldDescriptor, ...]] = {}
    for variable in template.variables:
        try:
            fields = resolve_field_path(request, variable.field_path)
        except KeyError as exc:
            raise TemplateError(f"{where}: no field {exc} in {request.full_name}") from exc
        leaf = fields[-1]
        if _is_repeated(leaf) or _message_type_name(leaf) not in ("", *_STRING_FORM_TYPES):
            raise TemplateError(f"{where}: {leaf.full_name} cannot be bound to a path")
        bound[variable.field_path] = tuple(fields)
    body = str(rule.body)
    if body not in ("", "*") and body not in request.fields_by_name:
        raise TemplateError(f"{where}: body field {body!r} is not in {request.full_name}")
    response_body = str(rule.response_body)
    if response_body and response_body not in method.descriptor.output_type.fields_by_name:
        raise TemplateError(f"{where}: response_body {response_body!r} is not a field")
    return _Route(http_method, template, body, response_body, method, bound)


# -- the handler --------------------------------------------------------------------------


class Transcoder:
    """The aiohttp handler for every transcoded route; mount it last, on ``/{tail:.*}``.

    Args:
        services: The service descriptors whose ``google.api.http`` rules to serve.
        channel: A channel to this service's own gRPC port.
        config: Body limit, forwarded headers and CORS origins.
        timeout: Deadline of a unary call, in seconds.
        stream_header_wait: How long a stream may take to produce its first message before
            the 200 headers are sent anyway (an error before then gets its own HTTP status).
        disconnect_poll_interval: How often an idle stream checks that its caller is still
            connected (aiohttp does not cancel handlers on disconnect by default).

    Raises:
        TemplateError: a rule's template, body or field path is invalid, or two rules clash.
    """

    def __init__(
        self,
        services: Sequence[ServiceDescriptor],
        channel: grpc.aio.Channel,
        config: HttpConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        stream_header_wait: float = 1.0,
        disconnect_poll_interval: float = 1.0,
    ) -> None:
        self._routes = _compile(services, channel)
        self._max_body = config.max_body_bytes
        # The shim's own keys are never copied from a request, whatever the config lists.
        self._forwarded = tuple(
            dict.fromkeys(
                h.lower() for h in config.forwarded_headers if h.lower() not in RESERVED_KEYS
            )
        )
        self._cors_origins = frozenset(config.cors_origins)
        self._timeout = timeout
        self._header_wait = stream_header_wait
        self._poll_interval = disconnect_poll_interval
        _mark_as_coroutine_function(self)

    def routes(self) -> list[RouteInfo]:
        """Every route, most specific first: (HTTP method, template, full gRPC method)."""
        return [RouteInfo(r.http_method, r.template.source, r.method.path) for r in self._routes]

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Transcode one request; every refusal is google.rpc.Status JSON."""
        try:
            return await self._dispatch(request)
        except _Rejected as rejected:
            return self._error_response(request, rejected.error)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        route, values, allowed = self._match(request.method, raw_path)
        if route is None:
            if not allowed:
                raise _Rejected(
                    rpc_http.local_error(
                        404,
                        grpc.StatusCode.NOT_FOUND,
                        f"no route for {request.path}",
                        reason="ROUTE_NOT_FOUND",
                    )
                )
            allow = ", ".join(sorted(allowed))
            if request.method == "OPTIONS":
                return self._options_response(request, allow)
            raise _Rejected(
                rpc_http.local_error(
                    405,
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{request.method} is not allowed on {request.path}; allowed: {allow}",
                    reason="METHOD_NOT_ALLOWED",
                    headers={"Allow": allow},
                )
            )
        metadata = self._metadata(request)
        body = await self._read_body(request) if route.body else b""
        if body:
            self._check_content_type(request)
        message = _build_request(route, values, request.rel_url.query, body)
        if route.method.stream is not None:
            return await self._stream(request, route, route.method.stream, message, metadata)
        assert route.method.unary is not None
        return await self._unary(request, route, route.method.unary, message, metadata)

    def _match(
        self, http_method: str, raw_path: str
    ) -> tuple[_Route | None, dict[tuple[str, ...], str], set[str]]:
        allowed: set[str] = set()
        for route in self._routes:
            values = route.template.match(raw_path)
            if values is None:
                continue
            if route.http_method == http_method:
                return route, values, allowed
            allowed.add(route.http_method)
        return None, {}, allowed

    def _metadata(self, request: web.Request) -> list[tuple[str, str]]:
        metadata: list[tuple[str, str]] = []
        request_id = request_id_of(request)  # the edge's usable id, whatever the header said
        for name in self._forwarded:
            if name == _REQUEST_ID_KEY and request_id:
                metadata.append((name, request_id))
                continue
            for value in request.headers.getall(name, ()):
                # A byte that is not UTF-8 reaches us as a surrogate: not ASCII, so refused.
                if not (value.isascii() and value.isprintable()):
                    raise _Rejected(rpc_http.bad_request(f"header {name} must be printable ASCII"))
                metadata.append((name, value))
        metadata.extend(forwarded_metadata(source_address_of(request)))
        return metadata

    async def _read_body(self, request: web.Request) -> bytes:
        too_large = _Rejected(
            rpc_http.local_error(
                413,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request body is larger than {self._max_body} bytes",
                reason="PAYLOAD_TOO_LARGE",
            )
        )
        if request.content_length is not None and request.content_length > self._max_body:
            raise too_large
        body = bytearray()
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > self._max_body:
                raise too_large
        return bytes(body)

    def _check_content_type(self, request: web.Request) -> None:
        charset = (request.charset or "utf-8").lower()
        if request.content_type != JSON_CONTENT_TYPE or charset not in ("utf-8", "utf8"):
            raise _Rejected(
                rpc_http.local_error(
                    415,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request body must be {JSON_CONTENT_TYPE} (UTF-8), "
                    f"not {header_text(request.headers.get('Content-Type', 'untyped'))}",
                    reason="UNSUPPORTED_MEDIA_TYPE",
                )
            )

    async def _unary(
        self,
        request: web.Request,
        route: _Route,
        multicallable: grpc.aio.UnaryUnaryMultiCallable[Message, Message],
        message: Message,
        metadata: list[tuple[str, str]],
    ) -> web.StreamResponse:
        call = multicallable(message, timeout=self._timeout, metadata=metadata)
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            return self._error_response(request, rpc_http.from_rpc_error(exc))
        except asyncio.CancelledError:
            call.cancel()
            raise
        headers = self._cors_headers(request)
        request_id = rpc_http.metadata_value(
            await call.trailing_metadata(), rpc_http.REQUEST_ID_KEY
        ) or rpc_http.metadata_value(await call.initial_metadata(), rpc_http.REQUEST_ID_KEY)
        if request_id:
            headers["X-Request-Id"] = request_id
        return web.Response(
            body=_dumps(_render(route, reply)), content_type=JSON_CONTENT_TYPE, headers=headers
        )

    async def _stream(
        self,
        request: web.Request,
        route: _Route,
        multicallable: grpc.aio.UnaryStreamMultiCallable[Message, Message],
        message: Message,
        metadata: list[tuple[str, str]],
    ) -> web.StreamResponse:
        call = multicallable(message, metadata=metadata)
        disconnected = asyncio.ensure_future(self._wait_for_disconnect(request))
        reading: asyncio.Future[Any] = asyncio.ensure_future(call.read())
        try:
            await asyncio.wait({reading}, timeout=self._header_wait)
            request_id = ""
            if reading.done():
                try:
                    reading.result()
                except grpc.aio.AioRpcError as exc:
                    # Nothing was sent yet: the error gets its own HTTP status.
                    return self._error_response(request, rpc_http.from_rpc_error(exc))
                request_id = rpc_http.metadata_value(
                    await call.initial_metadata(), rpc_http.REQUEST_ID_KEY
                )
            response = await self._start_stream(request, request_id)
            # ConnectionResetError: the caller left while we wrote; `finally` cancels the call.
            with contextlib.suppress(ConnectionResetError):
                await self._pump(route, call, response, reading, disconnected)
            return response
        finally:
            call.cancel()
            disconnected.cancel()
            reading.cancel()

    async def _pump(
        self,
        route: _Route,
        call: grpc.aio.UnaryStreamCall[Message, Message],
        response: web.StreamResponse,
        reading: asyncio.Future[Any],
        disconnected: asyncio.Future[None],
    ) -> None:
        """Copy messages to NDJSON lines until the stream ends, fails or the caller leaves."""
        try:
            while True:
                await asyncio.wait({reading, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    return  # the caller left
                try:
                    item = reading.result()
                except grpc.aio.AioRpcError as exc:
                    error = rpc_http.from_rpc_error(exc)
                    await response.write(_dumps({"error": error.body}) + b"\n")
                    break
                if not isinstance(item, Message):
                    break  # end of stream
                await response.write(_dumps(_render(route, item)) + b"\n")
                reading = asyncio.ensure_future(call.read())
        finally:
            reading.cancel()
        await response.write_eof()

    async def _start_stream(self, request: web.Request, request_id: str) -> web.StreamResponse:
        headers = self._cors_headers(request)
        headers["Content-Type"] = NDJSON_CONTENT_TYPE
        headers["Cache-Control"] = "no-store"
        headers["X-Accel-Buffering"] = "no"  # keep reverse proxies from buffering the stream
        request_id = request_id or request.headers.get(rpc_http.REQUEST_ID_KEY, "")
        if request_id.isascii() and request_id.isprintable() and request_id:
            headers["X-Request-Id"] = request_id
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        return response

    async def _wait_for_disconnect(self, request: web.Request) -> None:
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(self._poll_interval)

    def _error_response(self, request: web.Request, error: HttpError) -> web.Response:
        headers = self._cors_headers(request)
        headers.update(error.headers)
        return web.Response(
            status=error.status,
            body=_dumps(error.body),
            content_type=JSON_CONTENT_TYPE,
            headers=headers,
        )

    def _options_response(self, request: web.Request, allow: str) -> web.Response:
        headers = self._cors_headers(request)
        headers["Allow"] = allow
        if headers.get("Access-Control-Allow-Origin"):
            headers["Access-Control-Allow-Methods"] = allow
            headers["Access-Control-Allow-Headers"] = ", ".join(("content-type", *self._forwarded))
            headers["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=headers)

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin", "")
        if not origin or not (origin in self._cors_origins or "*" in self._cors_origins):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "X-Request-Id, Retry-After",
            "Vary": "Origin",
        }


def _mark_as_coroutine_function(handler: object) -> None:
    """Let aiohttp take an instance with ``async def __call__`` as an async handler.

    aiohttp asks ``iscoroutinefunction``, which is False for a callable instance, and would
    wrap it with a DeprecationWarning; the standard marker (3.12+) or asyncio's (3.11) fixes that.
    """
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(handler)
        return
    legacy_marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if legacy_marker is not None:
        setattr(handler, "_is_coroutine", legacy_marker)  # noqa: B010 - no such attribute declared


# -- request and response bodies ------------------------------------------------------------


def _build_request(
    route: _Route,
    path_values: Mapping[tuple[str, ...], str],
    query: MultiMapping[str],
    body: bytes,
) -> Message:
    message = route.method.request_class()
    if body:
        try:
            payload = parse_json(body)
        except DomainError as exc:
            raise _Rejected(
                rpc_http.local_error(
                    400, grpc.StatusCode.INVALID_ARGUMENT, exc.message, reason=exc.reason
                )
            ) from None
        if route.body == "*":
            if not isinstance(payload, dict):
                raise _Rejected(rpc_http.bad_request("request body must be a JSON object"))
            _parse_into(payload, message)
        else:
            _parse_into({route.body: payload}, message)
    bound: dict[str, Any] = {}
    if route.body != "*":
        _bind_query(route, query, bound)
    for field_path, value in path_values.items():
        fields = route.bound_fields[field_path]
        _put(bound, fields, _json_scalar(fields[-1], value, ".".join(field_path)))
    # Path values last, so they win over anything the body said about the same field.
    _parse_into(bound, message)
    return message


def _bind_query(route: _Route, query: MultiMapping[str], bound: dict[str, Any]) -> None:
    request = route.method.descriptor.input_type
    for name in dict.fromkeys(query):
        values = query.getall(name)
        try:
            fields = resolve_field_path(request, name.split("."))
        except KeyError as exc:
            raise _Rejected(
                rpc_http.bad_request(f"unknown query parameter {name!r}", name)
            ) from exc
        leaf = fields[-1]
        if route.body and fields[0].name == route.body:
            raise _Rejected(
                rpc_http.bad_request(f"{name!r} is bound by the request body, not the query", name)
            )
        if _is_map(leaf) or _message_type_name(leaf) not in ("", *_STRING_FORM_TYPES):
            raise _Rejected(
                rpc_http.bad_request(f"{name!r} cannot be set from the query string", name)
            )
        if not _is_repeated(leaf) and len(values) > 1:
            raise _Rejected(rpc_http.bad_request(f"{name!r} is not repeated", name))
        converted = [_json_scalar(leaf, value, name) for value in values]
        _put(bound, fields, converted if _is_repeated(leaf) else converted[0])


def _put(tree: dict[str, Any], fields: Sequence[FieldDescriptor], value: Any) -> None:
    for field in fields[:-1]:
        tree = tree.setdefault(field.name, {})
    tree[fields[-1].name] = value


def _json_scalar(field: FieldDescriptor, text: str, name: str) -> Any:
    """A path or query string as the JSON value json_format expects for ``field``."""
    type_name = _message_type_name(field)
    if type_name:
        if type_name == "google.protobuf.FieldMask":
            return ",".join(_lower_camel_path(path) for path in text.split(",") if path)
        if type_name == "google.protobuf.BoolValue":
            return _parse_bool(text, name)
        return text
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _parse_bool(text, name)
    if field.type == FieldDescriptor.TYPE_ENUM and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def _parse_bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _Rejected(rpc_http.bad_request(f"{name!r} must be true or false", name))


def _lower_camel_path(path: str) -> str:
    # FieldMask's JSON form is lowerCamelCase; accept snake_case too.
    return ".".join(
        part.split("_")[0] + "".join(w[:1].upper() + w[1:] for w in part.split("_")[1:])
        for part in path.strip().split(".")
    )


_FAILED_FIELD = re.compile(r"Failed to parse (\S+) field: ")
_NO_SUCH_FIELD = re.compile(r'has no field named "([^"]+)"')
_REPEATED_NAME = re.compile(r'should not have multiple "([^"]+)"( oneof)? fields')
_AT_SUFFIX = re.compile(r'\s+at\s+"?[\w.\[\]]*"?\.*$')


def _parse_into(tree: dict[str, Any], message: Message) -> None:
    try:
        json_format.ParseDict(tree, message)
    except json_format.ParseError as exc:
        field_path, reason = _describe_parse_error(str(exc))
        raise _Rejected(
            rpc_http.bad_request(
                f"{field_path or 'request'}: {reason}",
                field_path or None,
                description=reason,
            )
        ) from exc
    except (TypeError, ValueError) as exc:
        raise _Rejected(rpc_http.bad_request(f"invalid request: {exc}")) from exc


def _describe_parse_error(text: str) -> tuple[str, str]:
    """(field path, reason) from a json_format error such as
    ``Failed to parse device field: Message type "…" has no field named "bogus" at …``.
    """
    parts: list[str] = []
    rest = text
    while match := _FAILED_FIELD.match(rest):
        parts.append(match.group(1))
        rest = rest[match.end() :]
    reason = rest.split("\n", 1)[0]
    if match := _NO_SUCH_FIELD.search(reason):
        parts.append(match.group(1))
        reason = "unknown field"
    elif match := _REPEATED_NAME.search(reason):
        parts.append(match.group(1))
        reason = "set more than once" if not match.group(2) else "more than one oneof member set"
    reason = _AT_SUFFIX.sub("", reason).rstrip(".") or "invalid value"
    return ".".join(parts), reason


def _render(route: _Route, reply: Message) -> Any:
    rendered = json_format.MessageToDict(
        reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if route.response_body:
        return rendered.get(route.response_body)
    return rendered


def _dumps(value: Any) -> bytes:
    # "replace", as http/errors.json_response: a stray surrogate never fails a response.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
