"""Prometheus metrics of one server instance, served at ``/metrics``.

Each ``Metrics`` owns its own ``CollectorRegistry`` (never the global one), so two servers in
one process (tests) keep separate counts. What is counted:

- ``chittyauth_http_requests_total{route,method,status}`` and
  ``chittyauth_http_request_duration_seconds{route,method}``: per HTTP route template (never
  the raw path, so a scanner cannot grow the label set).
- ``chittyauth_grpc_requests_total{method,code}`` and
  ``chittyauth_grpc_request_duration_seconds{method}``: per gRPC method, fed by the server
  interceptor through :meth:`Metrics.observe_rpc`.
- ``chittyauth_tokens_issued_total{kind}``: access tokens issued, by token use.
- ``chittyauth_token_validations_total{result}``: ``active`` or the inactive reason.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

NAMESPACE = "chittyauth"
# Token checks take microseconds, HTTP round trips milliseconds: start the buckets low.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# A label that takes values from callers (gRPC method names) is capped at this many values;
# later ones are counted as OTHER, so an unknown-method scan cannot exhaust memory.
MAX_LABEL_VALUES = 512
OTHER = "other"


class _StatusCodeLike(Protocol):
    @property
    def name(self) -> str: ...


class _BoundedLabel:
    """Remembers the first ``limit`` distinct values of a label; any other becomes OTHER."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    """The counters and histograms of one server; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._http_latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ("route", "method"),
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self._rpc_requests = Counter(
            "grpc_requests",
            "gRPC calls finished, by full method name and status code.",
            ("method", "code"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._rpc_latency = Histogram(
            "grpc_request_duration_seconds",
            "Time to finish a gRPC call, by full method name.",
            ("method",),
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self._tokens_issued = Counter(
            "tokens_issued",
            "Access tokens issued, by kind (token use).",
            ("kind",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._validations = Counter(
            "token_validations",
            "Credential validations, by result (active or the inactive reason).",
            ("result",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._rpc_method = _BoundedLabel()
        self._http_method = _BoundedLabel(32)
        # Labelled children by (metric, labels): ``labels()`` takes a lock and rebuilds the
        # key on every call, a visible share of the hot paths. Label values are bounded.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        """Counts one answered HTTP request.

        Args:
            route: The route template (``/token``), never the raw path.
            method: The HTTP method.
            status: The response status.
            seconds: Time from receipt to the end of the response.
        """
        method = self._http_method(method.upper())
        self._child(self._http_requests, route, method, str(status)).inc()
        self._child(self._http_latency, route, method).observe(max(0.0, seconds))

    def observe_rpc(self, method: str, code: str | _StatusCodeLike, seconds: float) -> None:
        """Counts one finished gRPC call (called by the server interceptor).

        Args:
            method: The full method name (``/chitty.auth.v1.AuthService/Validate``).
            code: The status code, as a ``grpc.StatusCode`` or its name (``"OK"``).
            seconds: Time from the start of the call to its end.
        """
        code_name = code if isinstance(code, str) else code.name
        label = self._rpc_method(method)
        self._child(self._rpc_requests, label, code_name).inc()
        self._child(self._rpc_latency, label).observe(max(0.0, seconds))

    def token_issued(self, kind: str) -> None:
        """Counts one issued access token of ``kind`` (service, portal, linked_app …)."""
        self._tokens_issued.labels(kind or "unknown").inc()

    def validation(self, active: bool, reason: str = "") -> None:
        """Counts one validation: ``active``, or the inactive reason in lower case."""
        label = "active" if active else (reason or "inactive").lower()
        self._child(self._validations, label).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
