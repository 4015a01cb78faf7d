"""grpc.health.v1 with a status per service, whose Watch streams end at shutdown, and List."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Health(HealthServicer):  # type: ignore[misc]
    """The reference servicer, except that Watch returns once NOT_SERVING is sent at shutdown
    (without that, every open Watch would hold the server's drain for the full grace period),
    and with List, which the reference asyncio servicer leaves unimplemented.
    """

    async def List(
        self, request: health_pb2.HealthListRequest, context: aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        """Every service's status, the overall one ("") included (a snapshot, as the spec
        allows; the few services here never come near its RESOURCE_EXHAUSTED limit)."""
        reply = health_pb2.HealthListResponse()
        for service, status in list(self._server_status.items()):
            reply.statuses[service].status = status
        return reply

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        condition = self._server_watchers[request.service]
        self._watcher_count_by_service[request.service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(request.service, SERVICE_UNKNOWN)
                    if status != last:
                        yield health_pb2.HealthCheckResponse(status=status)
                        last = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[request.service] -= 1
            if self._watcher_count_by_service[request.service] == 0:
                del self._server_watchers[request.service]
                del self._watcher_count_by_service[request.service]

    def status(self, service: str) -> int:
        """The current status of a service (SERVICE_UNKNOWN when never set)."""
        status: int = self._server_status.get(service, SERVICE_UNKNOWN)
        return status

    @property
    def shutting_down(self) -> bool:
        return bool(self._gracefully_shutting_down)
