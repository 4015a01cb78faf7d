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

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

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


class _RequestTally:
    """A request counter and a latency histogram, for requests answered on the event loop.

    Every request passes here, so an observation is a dict lookup, a bisect and two adds;
    ``prometheus_client``'s own Counter and Histogram take a lock per update and walk the
    buckets in Python. Only the event loop's thread updates and reads it (``render`` runs
    there too). Exposed as ``<name>_total{labels…,result}`` and
    ``<latency>{labels…}`` at scrape time.
    """

    def __init__(
        self,
        counter: tuple[str, str],
        latency: tuple[str, str],
        labels: tuple[str, ...],
        result_label: str,
    ) -> None:
        self._counter = counter
        self._latency = latency
        self._labels = labels
        self._result_label = result_label
        self._counts: dict[tuple[str, ...], int] = {}
        # Per label values: one count per bucket (the last is +Inf), then the sum.
        self._rows: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], result: str, seconds: float) -> None:
        key = (*labels, result)
        self._counts[key] = self._counts.get(key, 0) + 1
        row = self._rows.get(labels)
        if row is None:
            row = self._rows[labels] = [0] * (len(LATENCY_BUCKETS) + 2)
        seconds = max(0.0, seconds)
        row[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(*self._counter, labels=[*self._labels, self._result_label])
        for key, count in list(self._counts.items()):
            counter.add_metric(list(key), count)
        yield counter
        histogram = HistogramMetricFamily(*self._latency, labels=list(self._labels))
        for labels, row in list(self._rows.items()):
            buckets: list[tuple[str, float]] = []
            running = 0.0
            for bound, in_bucket in zip((*LATENCY_BUCKETS, float("inf")), row, strict=False):
                running += in_bucket
                buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
            histogram.add_metric(list(labels), buckets, sum_value=row[-1])
        yield histogram


class Metrics:
    """The counters and histograms of one server; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._http = _RequestTally(
            (
                f"{NAMESPACE}_http_requests",
                "HTTP requests answered, by route template, method and status.",
            ),
            (
                f"{NAMESPACE}_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
            ),
            ("route", "method"),
            "status",
        )
        self._rpc = _RequestTally(
            (
                f"{NAMESPACE}_grpc_requests",
                "gRPC calls finished, by full method name and status code.",
            ),
            (
                f"{NAMESPACE}_grpc_request_duration_seconds",
                "Time to finish a gRPC call, by full method name.",
            ),
            ("method",),
            "code",
        )
        self.registry.register(self._http)
        self.registry.register(self._rpc)
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
        self._http.observe((route, self._http_method(method.upper())), str(status), seconds)

    def observe_rpc(self, method: str, code: str | _StatusCodeLike, seconds: float) -> None:
        """Counts one finished gRPC call (called by the server interceptor).

        Args:
            method: The full method name (``/chitty.auth.v1.AuthService/Validate``).
            code: The status code, as a ``grpc.StatusCode`` or its name (``"OK"``).
            seconds: Time from the start of the call to its end.
        """
        code_name = code if isinstance(code, str) else code.name
        self._rpc.observe((self._rpc_method(method),), code_name, seconds)

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
