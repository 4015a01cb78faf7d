"""Property-based fuzzing: no input makes the service answer INTERNAL, UNKNOWN or HTTP 500.

Every method of the server's method table (the contract, health) gets bodies drawn from its
request type: fields set sparsely with edge values, well-known types at and past their limits
(Timestamp and Duration seconds to ±2**63, nanos of any sign, NaN and ±Infinity in Structs),
then sent as they are, mutated (bytes flipped, cut, inserted) or replaced by random bytes, by
an anonymous caller, a person, a service and an admin. The HTTP shim gets JSON bodies nested
past every bound, NaN literals, broken UTF-8 and hostile header bytes on its transcoded,
legacy and OAuth routes. Each input must get an answer that is not INTERNAL / UNKNOWN / 500
(UNAVAILABLE / 503 from an authority that will not vouch and UNIMPLEMENTED / 501 are
deliberate answers), and nothing may log a traceback or an error.

The server runs in a thread of its own, so the callers here are plain synchronous clients and
each method gets a hypothesis run of its own (every method fuzzed, not only those a random
draw happens to pick). The profile is derandomized: the same inputs on every run, so CI is
deterministic. ``CHITTYAUTH_FUZZ_SCALE`` multiplies the number of inputs (``make fuzz``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.domain import policy
from chittyauth.http.transcoder import http_rules, rule_pattern
from chittyauth.rpc.services import ALL_SERVICES
from tests.security.helpers import mint
from tests.support.devauthority import DevAuthority
from tests.support.fixtures import with_authority

T = TypeVar("T")

PERSON = "chitty-person-1"
SCALE = max(1, int(os.environ.get("CHITTYAUTH_FUZZ_SCALE", "1")))
GRPC_EXAMPLES_PER_METHOD = 40 * SCALE
HTTP_EXAMPLES = 600 * SCALE
HEADER_EXAMPLES = 200 * SCALE
CALL_TIMEOUT_S = 10.0
STREAM_FIRST_MESSAGE_S = 0.3

settings.register_profile(
    "chittyauth-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
FUZZ = settings.get_profile("chittyauth-fuzz")

# Answers that mean "the service broke", whatever the input.
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


# -- a server in a thread of its own -----------------------------------------------------------


@dataclasses.dataclass
class Running:
    server: Server
    loop: asyncio.AbstractEventLoop
    tokens: dict[str, str]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)


CREDENTIALS: dict[str, dict[str, Any]] = {
    "person": {
        "subject": PERSON,
        "chitty_id": PERSON,
        "token_use": "portal",
        "session_id": "sess-fuzz",
        "scopes": policy.PERSON_SCOPES,
    },
    "service": {
        "subject": "svc-fuzz",
        "client_id": "svc-fuzz",
        "token_use": "service",
        "scopes": ("mcp:read", "tokens:issue"),
    },
    "admin": {"subject": "ops", "token_use": "service", "scopes": (policy.ADMIN,)},
}


@contextlib.contextmanager
def server_in_thread(config: Config, workdir: Path) -> Iterator[Running]:
    """A started server (and a dev authority that vouches for PERSON) on its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)

    authority = DevAuthority(workdir / "authority", known_ids=(PERSON,))
    authority.workdir.mkdir()
    run(authority.start())
    server = Server(with_authority(config, authority))
    try:
        run(server.start())
        tokens = {
            name: run(mint(server, fields, client_id="fuzz-client"))
            for name, fields in CREDENTIALS.items()
        }
        yield Running(server, loop, {"anonymous": "", **tokens})
    finally:
        with contextlib.suppress(Exception):
            run(server.stop(grace=1.0))
        run(authority.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@pytest.fixture
def running(unlimited: Config, tmp_path: Path) -> Iterator[Running]:
    # Sync fixture and sync tests: the server's loop is the thread's, not pytest's.
    with server_in_thread(unlimited, tmp_path) as running:
        yield running


class LogWatch:
    """The records logged since the last look: none may carry a traceback or be an error."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO)
        self._caplog = caplog
        self._seen = 0

    def assert_clean(self, what: object) -> None:
        records = self._caplog.records
        fresh, self._seen = records[self._seen :], len(records)
        bad = [r for r in fresh if r.exc_info is not None or r.levelno >= logging.ERROR]
        assert not bad, (what, [(r.name, r.getMessage()) for r in bad])


# -- request bodies from descriptors -----------------------------------------------------------

_INT_LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
# Values the service gives meaning to, so draws reach past the first "not found".
_MEANINGFUL = [
    "",
    PERSON,
    f"people/{PERSON}",
    f"people/{PERSON}/apiKeys/x",
    "sessions/sess-fuzz",
    "sessions/sess-fuzz/state",
    "clients/fuzz-client",
    "svc-fuzz",
    "*",
    "mcp:read",
    "chittyauth:admin",
    "https://app.example/callback",
    "a@example.com",
    "../../etc/passwd",
    "\x00",
    "é" * 300,
    "x" * 5000,
]
_SECONDS_EDGES = [
    0,
    -1,
    1,
    2**31,
    -(2**63),
    2**63 - 1,
    253_402_300_799,
    253_402_300_800,
    -62_135_596_800,
    -62_135_596_801,
    315_576_000_000,
    315_576_000_001,
    -315_576_000_001,
]
_NANOS_EDGES = [0, 1, -1, 999_999_999, 1_000_000_000, -1_000_000_000, 2**31 - 1, -(2**31)]


def _int(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_LIMITS[field.type]
    edges = [v for v in (0, 1, -1, 2, low, high, 2**31 - 1, -(2**31), 2**53) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(_MEANINGFUL), st.text(max_size=40))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if kind == FieldDescriptor.TYPE_DOUBLE else 32)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 40)  # open enums: unknown numbers are legal on the wire
    return _int(field)


def _json_value(depth: int) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),  # NaN and ±Infinity included
        st.sampled_from([1e308, -1e308, 2.0**63, 5e-324]),
        st.text(max_size=20),
    )
    if depth <= 0:
        return leaves
    return st.one_of(
        leaves,
        st.lists(_json_value(depth - 1), max_size=3),
        st.dictionaries(st.text(max_size=8), _json_value(depth - 1), max_size=3),
    )


def _set_value(target: Message, value: Any) -> None:
    """A google.protobuf.Value from a Python value (NaN and Infinity kept as they are)."""
    if value is None:
        target.null_value = 0  # type: ignore[attr-defined]
    elif isinstance(value, bool):
        target.bool_value = value  # type: ignore[attr-defined]
    elif isinstance(value, float):
        target.number_value = value  # type: ignore[attr-defined]
    elif isinstance(value, str):
        target.string_value = value  # type: ignore[attr-defined]
    elif isinstance(value, list):
        items = target.list_value.values  # type: ignore[attr-defined]
        target.list_value.SetInParent()  # type: ignore[attr-defined]
        for item in value:
            _set_value(items.add(), item)
    else:
        target.struct_value.SetInParent()  # type: ignore[attr-defined]
        _set_struct(target.struct_value, value)  # type: ignore[attr-defined]


def _set_struct(target: Message, mapping: dict[str, Any]) -> None:
    for key, item in mapping.items():
        _set_value(target.fields[key], item)  # type: ignore[attr-defined]


@st.composite
def _fill(draw: st.DrawFn, message: Message, depth: int) -> Message:
    name = message.DESCRIPTOR.full_name
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        message.seconds = draw(st.one_of(st.sampled_from(_SECONDS_EDGES), _seconds()))  # type: ignore[attr-defined]
        message.nanos = draw(st.sampled_from(_NANOS_EDGES) | st.integers(-(2**31), 2**31 - 1))  # type: ignore[attr-defined]
        return message
    if name == "google.protobuf.Struct":
        _set_struct(message, draw(st.dictionaries(st.text(max_size=8), _json_value(2), max_size=4)))
        return message
    if name == "google.protobuf.Value":
        _set_value(message, draw(_json_value(2)))
        return message
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue  # sparse: most requests leave most fields unset
        _fill_field(draw, message, field, depth)
    return message


def _seconds() -> st.SearchStrategy[int]:
    return st.integers(-(2**63), 2**63 - 1)


def _fill_field(draw: st.DrawFn, message: Message, field: FieldDescriptor, depth: int) -> None:
    container = getattr(message, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        for _ in range(draw(st.integers(0, 2))):
            key = draw(_scalar(key_field))
            if value_field.message_type is None:
                container[key] = draw(_scalar(value_field))
            elif depth > 0:
                draw(_fill(container[key], depth - 1))
        return
    if field.is_repeated:
        for _ in range(draw(st.integers(0, 3))):
            if entry is None:
                container.append(draw(_scalar(field)))
            elif depth > 0:
                draw(_fill(container.add(), depth - 1))
        return
    if entry is None:
        setattr(message, field.name, draw(_scalar(field)))
    elif depth > 0:
        container.SetInParent()
        draw(_fill(container, depth - 1))


def _request_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


@st.composite
def bodies(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """A drawn request, serialized, then maybe mutated; or random bytes."""
    how = draw(st.sampled_from(["as-drawn", "as-drawn", "mutated", "random"]))
    if how == "random":
        return draw(st.binary(max_size=160))
    body = draw(_fill(_request_class(descriptor)(), 3)).SerializeToString()
    if how == "mutated":
        body = draw(_mutated(body))
    return body


@st.composite
def _mutated(draw: st.DrawFn, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        else:
            data += draw(st.sampled_from([b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10]))
    return bytes(data)


# -- gRPC -----------------------------------------------------------------------------------------


def _served_methods(running: Running) -> dict[str, tuple[Descriptor, bool]]:
    """Every method of the table, with its request type and whether it streams its answer."""
    pool = descriptor_pool.Default()
    methods: dict[str, tuple[Descriptor, bool]] = {}
    for path in running.server.method_table:
        service, _, name = path.lstrip("/").partition("/")
        method = pool.FindServiceByName(service).methods_by_name[name]
        methods[path] = (method.input_type, method.server_streaming)
    return methods


def _call(channel: grpc.Channel, path: str, streams: bool, body: bytes, token: str) -> str:
    """The status code name of one call (OK, or the first message of a stream arrived)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        if not streams:
            channel.unary_unary(path)(body, timeout=CALL_TIMEOUT_S, metadata=metadata)
            return "OK"
        call = channel.unary_stream(path)(body, metadata=metadata)
        done = threading.Event()
        outcome: list[str] = []

        def first() -> None:
            try:
                next(call)
                outcome.append("OK")
            except StopIteration:
                outcome.append("OK")
            except grpc.RpcError as exc:
                outcome.append(exc.code().name)
            done.set()

        reader = threading.Thread(target=first, daemon=True)
        reader.start()
        done.wait(STREAM_FIRST_MESSAGE_S)
        call.cancel()
        reader.join(CALL_TIMEOUT_S)
        return outcome[0] if outcome and outcome[0] != "CANCELLED" else "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def _fuzz_method(
    channel: grpc.Channel,
    running: Running,
    path: str,
    descriptor: Descriptor,
    streams: bool,
    outcomes: collections.Counter[str],
    logs: LogWatch,
) -> None:
    """One hypothesis run over ``path``: every input answered, none broken, logs clean."""

    @settings(FUZZ, max_examples=GRPC_EXAMPLES_PER_METHOD)
    @given(body=bodies(descriptor), caller=st.sampled_from(sorted(running.tokens)))
    def fuzz(body: bytes, caller: str) -> None:
        code = _call(channel, path, streams, body, running.tokens[caller])
        outcomes[code] += 1
        assert code not in {c.name for c in BROKEN}, (path, caller, body)
        if not streams:
            assert code != "DEADLINE_EXCEEDED", (path, caller, body)
        logs.assert_clean((path, caller, body))

    fuzz()


def test_every_method_answers_fuzzed_bodies_without_internal_errors(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    logs = LogWatch(caplog)
    methods = _served_methods(running)
    contract = {f"/{s.full_name}/{m.name}" for s in ALL_SERVICES for m in s.descriptor.methods}
    assert contract | {"/grpc.health.v1.Health/Check"} <= set(methods)  # all, not a subset
    outcomes: collections.Counter[str] = collections.Counter()
    with grpc.insecure_channel(running.server.grpc_target) as channel:
        for path, (descriptor, streams) in sorted(methods.items()):
            _fuzz_method(channel, running, path, descriptor, streams, outcomes, logs)
    # The inputs reached past the gate and the decoder, not only into refusals.
    assert outcomes["OK"] > 0
    assert outcomes["INVALID_ARGUMENT"] > 0
    assert sum(outcomes.values()) >= len(methods) * GRPC_EXAMPLES_PER_METHOD


# -- HTTP -----------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\{[^}=]+(?:=([^}]*))?\}")


def _http_routes() -> list[tuple[str, str, bool]]:
    """(HTTP method, path template, reads a body) of every transcoded route, and the others."""
    routes: list[tuple[str, str, bool]] = []
    for spec in ALL_SERVICES:
        for method in spec.descriptor.methods:
            for rule in http_rules(method):
                verb, template = rule_pattern(rule)
                routes.append((verb.upper(), template, bool(rule.body)))
    for path in (
        "/v1/tokens/validate",
        "/v1/api-keys/validate",
        "/v1/mcp/portal/authenticate",
        "/v1/mcp/linked-app/oauth",
        "/v1/mcp/authenticate",
        "/v1/mcp/validate",
        "/v1/tokens/generate",
        "/v1/api-keys/generate",
        "/v1/authorizations/grant",
        "/v1/authorizations/check",
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/validate",
        "/v1/auth/logout",
        "/register",
        "/portal/login",
        "/token",
        "/introspect",
        "/revoke",
    ):
        routes.append(("POST", path, True))
    routes.append(("GET", "/v1/authorizations/{chitty_id}", False))
    return routes


def _path(template: str, segment: str) -> str:
    def fill(match: re.Match[str]) -> str:
        pattern = match.group(1) or "*"
        return pattern.replace("**", segment).replace("*", segment)

    return _VARIABLE.sub(fill, template)


_SEGMENTS = st.one_of(
    st.sampled_from(["x", PERSON, "sess-fuzz", "fuzz-client", "%00", "%FF%FE", "..", "a%2Fb"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12),
)


def _deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    how = draw(
        st.sampled_from(
            ["object", "deep", "deep", "deep-field", "deep-field", "nan", "broken", "random"]
        )
    )
    if how == "random":
        return draw(st.binary(max_size=200))
    if how == "deep":
        # Around our bound (32), and past the parser's own recursion limit (about 1,000).
        return _deep(draw(st.sampled_from([32, 33, 200, 1001, 5000, 20_000]))).encode()
    if how == "deep-field":
        depth = draw(st.sampled_from([20, 33, 200, 1500, 20_000]))
        name = draw(st.sampled_from(["token", "metadata", "extra_claims", "device", "api_key"]))
        return f'{{"{name}": {_deep(depth, "{}")}}}'.encode()
    if how == "nan":
        name = draw(st.sampled_from(["metadata", "extra_claims", "token", "ttl"]))
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
        return f'{{"{name}": {{"x": {literal}}}}}'.encode()
    text = draw(
        st.dictionaries(
            st.sampled_from(
                ["token", "api_key", "chitty_id", "email", "password", "expire_time", "ttl",
                 "metadata", "extra_claims", "scopes", "client_id", "name", "cursor"]
            ),
            _json_value(2),
            max_size=4,
        ).map(_dumps_loose)
    )  # fmt: skip
    if how == "broken":
        return text.encode()[: draw(st.integers(0, max(0, len(text) - 1)))] + b"\xff\xfe"
    return text.encode()


def _dumps_loose(value: Any) -> str:
    return json.dumps(value)  # allow_nan: NaN / Infinity literals go out as Python writes them


def _http(port: int, request: bytes) -> int:
    """The status of a raw HTTP/1.1 exchange (only the status line is read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT_S) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    if not head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):  # aiohttp says 1.0 to a bad head
        raise AssertionError(f"no HTTP answer: {head[:80]!r}")
    return int(head.split(b" ", 2)[1])


def _request(verb: str, path: str, body: bytes, headers: list[bytes], content_type: bytes) -> bytes:
    lines = [
        f"{verb} {path} HTTP/1.1".encode("utf-8", "surrogateescape"),
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: " + content_type,
        b"Content-Length: " + str(len(body)).encode(),
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _not_broken(status: int) -> bool:
    # 501 (UNIMPLEMENTED) and 503 (UNAVAILABLE, fail closed) are answers; 500 and the rest are not.
    return status < 500 or status in (501, 503)


def test_http_routes_answer_fuzzed_json_without_500(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    logs = LogWatch(caplog)
    routes = _http_routes()
    port = running.server.http_port
    statuses: collections.Counter[int] = collections.Counter()

    @settings(FUZZ, max_examples=HTTP_EXAMPLES)
    @given(
        route=st.sampled_from(routes),
        segment=_SEGMENTS,
        body=json_bodies(),
        caller=st.sampled_from(sorted(running.tokens)),
        content_type=st.sampled_from(
            [b"application/json"] * 4 + [b"application/x-www-form-urlencoded", b"text/plain"]
        ),
    )
    def fuzz(
        route: tuple[str, str, bool], segment: str, body: bytes, caller: str, content_type: bytes
    ) -> None:
        verb, template, reads_body = route
        token = running.tokens[caller]
        headers = [b"Authorization: Bearer " + token.encode()] if token else []
        request = _request(
            verb, _path(template, segment), body if reads_body else b"", headers, content_type
        )
        status = _http(port, request)
        statuses[status] += 1
        assert _not_broken(status), (verb, template, segment, body[:200], status)
        logs.assert_clean((verb, template, body[:200]))

    fuzz()
    assert statuses[400] > 0  # the bodies did reach the parsers
    assert sum(n for s, n in statuses.items() if s < 300) > 0


_HEADER_NAMES = [
    b"Authorization",
    b"X-Request-Id",
    b"X-Forwarded-For",
    b"Origin",
    b"Cookie",
    b"Content-Type",
    b"Accept",
    b"Cf-Access-Jwt-Assertion",
    b"X-Anything",
]


def test_http_routes_answer_hostile_header_bytes_without_500(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    logs = LogWatch(caplog)
    routes = _http_routes()
    port = running.server.http_port

    @settings(FUZZ, max_examples=HEADER_EXAMPLES)
    @given(
        route=st.sampled_from(routes),
        name=st.sampled_from(_HEADER_NAMES),
        prefix=st.sampled_from([b"", b"Bearer ", b"Basic ", b"https://", b"10.0.0.1, "]),
        # Any byte a header value may carry on the wire (no CR, LF or NUL), UTF-8 or not.
        value=st.binary(min_size=1, max_size=40).map(
            lambda raw: bytes(b for b in raw if b not in b"\r\n\x00") or b"\xff"
        ),
    )
    def fuzz(route: tuple[str, str, bool], name: bytes, prefix: bytes, value: bytes) -> None:
        verb, template, reads_body = route
        body = b'{"token": "x"}' if reads_body else b""
        request = _request(
            verb, _path(template, "x"), body, [name + b": " + prefix + value], b"application/json"
        )
        status = _http(port, request)
        assert _not_broken(status), (verb, template, name, prefix + value, status)
        logs.assert_clean((verb, template, name, prefix + value))

    fuzz()
