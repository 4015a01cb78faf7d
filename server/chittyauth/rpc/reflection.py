"""Server reflection, with method names resolvable as symbols.

The default descriptor pool finds services, messages and fields by name but not methods
(``chitty.auth.v1.AuthService.Validate``), which is what ``grpcurl describe`` asks for. This pool
view answers a method by the file of its service and passes everything else through.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_reflection.v1alpha import reflection


class _MethodAwarePool:
    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method_name = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method_name not in service.methods_by_name:
                raise
            return service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def enable_reflection(service_names: list[str], server: aio.Server) -> None:
    """Adds the reflection service for ``service_names`` (itself included)."""
    names = [*service_names, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(
        names,
        server,
        pool=_MethodAwarePool(descriptor_pool.Default()),  # type: ignore[arg-type]
    )
