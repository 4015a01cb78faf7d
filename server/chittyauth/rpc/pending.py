"""Servicers for RPCs whose behaviour is not built yet: UNIMPLEMENTED, naming the RPC.

A servicer class built by ``pending_servicer`` answers every method it does not define itself
with UNIMPLEMENTED and a message naming ``Service.Method`` — never INTERNAL, and never the
generated stub's anonymous "Method not implemented!".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio

from chittyauth.domain.errors import NotImplementedYet

T = TypeVar("T")


def pending_servicer(base: type[T], service: ServiceDescriptor, arrives_with: str) -> type[T]:
    """A subclass of the generated ``base`` whose every method answers UNIMPLEMENTED."""
    namespace: dict[str, Any] = {}
    for method in service.methods:
        label = f"{service.name}.{method.name}"
        if method.server_streaming:
            namespace[method.name] = _streaming(label, arrives_with)
        else:
            namespace[method.name] = _unary(label, arrives_with)
    return type(f"Pending{service.name}", (base,), namespace)


def _error(label: str, arrives_with: str) -> NotImplementedYet:
    return NotImplementedYet(
        f"{label} is not implemented yet; it arrives with {arrives_with}",
        metadata={"method": label},
    )


def _unary(label: str, arrives_with: str) -> Callable[..., Any]:
    async def method(
        self: object, request: object, context: aio.ServicerContext[Any, Any]
    ) -> object:
        raise _error(label, arrives_with)

    return method


def _streaming(label: str, arrives_with: str) -> Callable[..., Any]:
    async def method(
        self: object, request: object, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[object]:
        raise _error(label, arrives_with)
        yield  # pragma: no cover - makes this an async generator

    return method
