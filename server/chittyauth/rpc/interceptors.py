"""The handler wrapper: request id, credentials, decoding, domain errors -> gRPC status, and
the drain.

It wraps each method's handler once and caches the wrapper, so the per-call cost is one
metadata scan, two contextvar sets, and the drain's in-flight count. Request bodies are decoded
here rather than by grpc (``rpc/decoding.py``), so an undecodable body is INVALID_ARGUMENT, not
UNKNOWN.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from grpc import aio

from chittyauth.domain import audit, policy
from chittyauth.domain.errors import DomainError, PermissionDenied, Unauthenticated, Unavailable
from chittyauth.logs import request_id_var
from chittyauth.rpc.auth import PrincipalResolver
from chittyauth.rpc.context import CallInfo, call_var
from chittyauth.rpc.decoding import Decoder, decoder_for
from chittyauth.rpc.errors import STATUS_DETAILS_KEY, status_for
from chittyauth.rpc.forwarded import vouched_address
from chittyauth.store.protocol import Store

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
_MAX_REQUEST_ID = 128
# Generated request ids: a random per-process prefix and a counter. Unique without a
# getrandom() call per RPC; request ids are correlation handles, not secrets.
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)

# Counts a finished call: (full method name, status code name, seconds).
Observer = Callable[[str, str, float], None]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# The principal resolver, looked up when a call arrives (the token service is built after
# the server); None answers UNAUTHENTICATED.
ResolverLookup = Callable[[], PrincipalResolver | None]
# The contract's methods: each must have a row in the policy table, or it refuses every call.
CONTRACT_PREFIX = "/chitty.auth."


class Gate:
    """Admits a call by its policy row before the handler runs: the caller's kind and scopes.

    Operations any caller may call (their rows accept ANONYMOUS) pass with no principal and
    no work; the rest need a valid bearer credential. A refusal of an authenticated caller is
    audited. Ownership, which needs the data, is the domain's to check, by the same policy
    module.
    """

    def __init__(self, lookup: ResolverLookup, store: Store | None = None) -> None:
        self._lookup = lookup
        self._store = store

    def rule_for(self, method: str) -> policy.Rule | None:
        """The row for ``method``; a refusing row for a contract method without one."""
        rule = policy.POLICY.get(method)
        if rule is None and method.startswith(CONTRACT_PREFIX):
            return policy.Rule(method, frozenset(), summary="no policy row: refused")
        return rule

    async def admit(self, rule: policy.Rule, info: CallInfo) -> CallInfo:
        """``info`` with the admitted principal; raises Unauthenticated / PermissionDenied."""
        if not rule.kinds:
            raise PermissionDenied("this operation has no policy", reason="NO_POLICY")
        if not info.bearer:
            raise Unauthenticated("this call needs a bearer token", reason="MISSING_CREDENTIALS")
        resolver = self._lookup()
        if resolver is None:
            raise Unauthenticated("credentials cannot be validated yet", reason="INVALID_TOKEN")
        principal = resolver.principal_for(info.bearer)
        await audit.admit(self._store, rule, principal, request_id=info.request_id)
        admitted = info._replace(principal=principal)
        call_var.set(admitted)
        return admitted


class Drain:
    """Counts the calls in progress, and refuses new ones once the server stops accepting.

    grpc.aio's own ``server.stop(grace)`` cancels calls it has accepted (a write among them
    leaves its caller unable to tell whether it committed), so the server drains here first:
    ``stop_accepting()``, after which a new call is refused UNAVAILABLE before it does anything,
    then ``wait_idle()`` until every accepted call has finished; only then is grpc stopped.

    A call the HTTP shim forwards (vouched for by the shim's secret) is still accepted after
    the stop: it is part of an HTTP request that was accepted, possibly by another worker's shim.

    The hot path is two integer updates and two attribute reads; nothing is awaited.
    """

    __slots__ = ("_idle", "_refusal", "accepting", "in_flight", "last_arrival", "refused")

    def __init__(self) -> None:
        self.accepting = True
        self.in_flight = 0
        # Calls refused since the stop, reported when the drain ends.
        self.refused = 0
        # When (time.monotonic()) the last call arrived after the stop: grpc cancels the calls
        # queued in it but not yet handed to us when it stops, so the server stops it only once
        # callers have gone quiet (or the grace period is over).
        self.last_arrival = 0.0
        self._idle: asyncio.Event | None = None
        code, status = status_for(
            Unavailable(
                "the server is shutting down and did not start this call; retry it",
                reason="SHUTTING_DOWN",
            )
        )
        self._refusal = (code, status.message, status.SerializeToString())

    def stop_accepting(self) -> None:
        """From now on a new call (not forwarded by the shim) is refused UNAVAILABLE."""
        self.last_arrival = time.monotonic()  # the quiet period counts from here at the latest
        self.accepting = False

    async def wait_idle(self, within_s: float) -> int:
        """Waits up to ``within_s`` until no call is in progress; returns how many still are."""
        if self.in_flight > 0:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, within_s))
            except TimeoutError:
                pass
            finally:
                self._idle = None
        return self.in_flight

    def left(self) -> None:
        """One accepted call has finished."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def refuse_late(self, context: aio.ServicerContext[Any, Any], info: CallInfo) -> None:
        """Aborts a call that arrived after the stop, unless the shim forwarded it."""
        self.last_arrival = time.monotonic()
        if vouched_address(info.metadata):
            return
        self.refused += 1
        code, message, details = self._refusal
        await context.abort(
            code,
            message,
            trailing_metadata=((REQUEST_ID_KEY, info.request_id), (STATUS_DETAILS_KEY, details)),
        )


class InterceptedServer:
    """Registers services on ``server`` with every method handler wrapped once, up front.

    No per-call grpc interceptor (it would add a coroutine and a handler lookup to every
    RPC): pass this where generated ``add_XServicer_to_server`` functions expect the server.

    Methods the generated code would register one by one (``add_registered_method_handlers``)
    go into one table served as a single generic handler instead: grpc.aio keeps a pending
    request for every registered method and waits on all of them again after each call, work
    that grows with the number of methods (about 40 here) on every RPC. One generic handler
    keeps one pending request, and finding the method is a dict lookup.
    """

    def __init__(
        self,
        server: aio.Server,
        observe: Observer | None = None,
        gate: Gate | None = None,
        drain: Drain | None = None,
    ) -> None:
        self._server = server
        self._observe = observe
        self._gate = gate
        self.drain = drain or Drain()
        self._table = _MethodTable()
        server.add_generic_rpc_handlers((self._table,))

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [
                _WrappedGeneric(handler, self._observe, self._gate, self.drain)
                for handler in handlers
            ]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, Handler]
    ) -> None:
        for name, handler in method_handlers.items():
            method = f"/{service_name}/{name}"
            self._table.methods[method] = _wrap(
                method, handler, self._observe, self._gate, self.drain
            )

    @property
    def methods(self) -> Mapping[str, Handler]:
        """The wrapped handlers of the table, by full method name."""
        return self._table.methods

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _MethodTable(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Wrapped handlers by full method name (``/pkg.Service/Method``)."""

    def __init__(self) -> None:
        self.methods: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        return self.methods.get(handler_call_details.method)


class _WrappedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(
        self,
        inner: grpc.GenericRpcHandler[Any, Any],
        observe: Observer | None,
        gate: Gate | None,
        drain: Drain,
    ) -> None:
        self._inner = inner
        self._observe = observe
        self._gate = gate
        self._drain = drain
        self._wrapped: dict[str, Handler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        if method in self._wrapped:
            return self._wrapped[method]
        handler = self._inner.service(handler_call_details)
        wrapped = (
            _wrap(method, handler, self._observe, self._gate, self._drain)
            if handler is not None
            else None
        )
        self._wrapped[method] = wrapped
        return wrapped


def _wrap(
    method: str, handler: Handler, observe: Observer | None, gate: Gate | None, drain: Drain
) -> Handler:
    admit = _admission(method, gate)
    # grpc gets no deserializer and hands over the raw body; the wrapper decodes it (after
    # admission), so a body that does not parse is refused like any other bad request.
    decode = decoder_for(handler.request_deserializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(method, handler.unary_unary, observe, admit, decode, drain),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream(method, handler.unary_stream, admit, decode, drain),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:  # server reflection; none in the contract
        return grpc.stream_stream_rpc_method_handler(
            _bidi(method, handler.stream_stream, admit, decode),
            response_serializer=handler.response_serializer,
        )
    return handler  # client-streaming: none served


Admission = Callable[[CallInfo], Awaitable[CallInfo]] | None


def _admission(method: str, gate: Gate | None) -> Admission:
    """The policy check for ``method``, or None where nothing needs checking before the call."""
    if gate is None:
        return None
    rule = gate.rule_for(method)
    if rule is None or policy.Kind.ANONYMOUS in rule.kinds:
        return None
    return functools.partial(gate.admit, rule)


def _begin(method: str, context: aio.ServicerContext[Any, Any]) -> CallInfo:
    metadata = context.invocation_metadata() or ()
    request_id = bearer = ""
    for key, value in metadata:
        # Binary (-bin) values are bytes: nothing here reads them.
        if key == REQUEST_ID_KEY and isinstance(value, str):
            request_id = value[:_MAX_REQUEST_ID]
        elif key == "authorization" and isinstance(value, str):
            scheme, _, credential = value.partition(" ")
            if scheme.lower() == "bearer":
                bearer = credential.strip()
    if not request_id or not request_id.isprintable():
        request_id = f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"
    info = CallInfo(method, request_id, bearer, metadata, context.peer)
    call_var.set(info)
    request_id_var.set(request_id)
    context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
    return info


async def _abort(
    context: aio.ServicerContext[Any, Any], info: CallInfo, exc: BaseException
) -> None:
    if isinstance(exc, DomainError):
        code, status = status_for(exc)
        log.info(
            "call refused",
            extra={"method": info.method, "code": code.name, "reason": exc.reason},
        )
        await context.abort(
            code,
            status.message,
            trailing_metadata=(
                (REQUEST_ID_KEY, info.request_id),
                (STATUS_DETAILS_KEY, status.SerializeToString()),
            ),
        )
    log.error("unexpected error", exc_info=exc, extra={"method": info.method})
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error (request id {info.request_id})",
        trailing_metadata=((REQUEST_ID_KEY, info.request_id),),
    )


def _unary(
    method: str,
    behaviour: Callable[..., Any],
    observe: Observer | None,
    admit: Admission,
    decode: Decoder | None,
    drain: Drain,
) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        info = _begin(method, context)
        if not drain.accepting:
            try:
                await drain.refuse_late(context, info)
            except aio.AbortError:
                if observe is not None:
                    observe(method, "UNAVAILABLE", time.perf_counter() - started)
                raise
        drain.in_flight += 1
        code = "OK"
        try:
            if admit is not None:
                info = await admit(info)
            if decode is not None:
                request = decode(request)
            return await behaviour(request, context)
        except aio.AbortError:
            code = _code_name(context)
            raise
        except DomainError as exc:
            code = exc.grpc_code
            await _abort(context, info, exc)
        except Exception as exc:  # every error leaves through _abort
            code = "INTERNAL"
            await _abort(context, info, exc)
        finally:
            drain.left()
            if observe is not None:
                observe(method, code, time.perf_counter() - started)

    return handle


def _code_name(context: aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _stream(
    method: str,
    behaviour: Callable[..., Any],
    admit: Admission,
    decode: Decoder | None,
    drain: Drain,
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        info = _begin(method, context)
        if not drain.accepting:
            await drain.refuse_late(context, info)
        drain.in_flight += 1
        try:
            if admit is not None:
                info = await admit(info)
            if decode is not None:
                request = decode(request)
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for message in result:
                    yield message
            else:
                await result
        except aio.AbortError:
            raise
        except Exception as exc:  # every error leaves through _abort
            await _abort(context, info, exc)
        finally:
            drain.left()

    return handle


def _bidi(
    method: str, behaviour: Callable[..., Any], admit: Admission, decode: Decoder | None
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(requests: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        info = _begin(method, context)
        try:
            if admit is not None:
                info = await admit(info)
            decoded = requests if decode is None else _decoded(requests, decode)
            async for message in behaviour(decoded, context):
                yield message
        except aio.AbortError:
            raise
        except Exception as exc:  # every error leaves through _abort
            await _abort(context, info, exc)

    return handle


async def _decoded(requests: AsyncIterator[bytes], decode: Decoder) -> AsyncIterator[Any]:
    async for body in requests:
        yield decode(body)
