"""Client for the external ChittyID authority: mint, validate, health.

The authority is the only source of ChittyIDs, so this client fails closed: any network error,
timeout, 5xx or unreadable answer raises ``Unavailable``; it never falls back to a format check.
A circuit breaker stops hammering an authority that is down, and its state is published as
``available`` (the server maps it to gRPC health) with listeners told of every change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

import aiohttp

from chittyauth import __version__
from chittyauth.config import AuthorityConfig
from chittyauth.domain.chittyid import check_entity, check_format
from chittyauth.domain.errors import DomainError, InvalidRequest, Unavailable

logger = logging.getLogger(__name__)

AvailabilityListener = Callable[[bool], None]
CircuitState = Literal["closed", "open", "half_open"]
_T = TypeVar("_T")

# Bounds the positive cache so a flood of distinct valid IDs cannot grow memory without limit.
_CACHE_MAX_ENTRIES: Final = 10_000
# Answers larger than this are not an authority speaking our API.
_MAX_ANSWER_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class ChittyIdInfo:
    """The authority's verdict on one ChittyID."""

    valid: bool
    chitty_id: str
    entity: str | None


class _AuthorityFailure(Exception):
    """The authority could not be reached or did not answer sensibly (counts against it)."""


class CircuitBreaker:
    """Consecutive-failure breaker: closed -> open -> half-open -> closed.

    After ``threshold`` failures in a row it opens and calls fail fast; ``reset_s`` later it
    lets one trial call through (half-open), whose outcome closes or re-opens it.
    """

    def __init__(self, threshold: int, reset_s: float, clock: Callable[[], float]) -> None:
        self._threshold = max(1, threshold)
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state: CircuitState = "closed"
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The current state, moving open -> half-open once the reset time has passed."""
        if self._state == "open" and self._clock() - self._opened_at >= self._reset_s:
            self._state = "half_open"
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker will let a trial call through."""
        return max(0.0, self._opened_at + self._reset_s - self._clock())

    def acquire(self) -> bool:
        """Whether a call may go out now; in half-open only one trial at a time may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def abandon(self) -> None:
        """A call ended without a verdict (cancelled): free the trial slot, change nothing."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        """A call got a sensible answer: close."""
        self._failures = 0
        self._trial_in_flight = False
        self._state = "closed"

    def record_failure(self) -> None:
        """A call failed: count it, and open (again) at the threshold or after a failed trial."""
        self._failures += 1
        self._trial_in_flight = False
        if self._state != "closed" or self._failures >= self._threshold:
            self._state = "open"
            self._opened_at = self._clock()


class AuthorityClient:
    """aiohttp client for the authority API (``POST /mint``, ``GET /validate/{id}``, ``/health``).

    Call ``start()`` inside the event loop before use and ``close()`` at shutdown. Run
    ``run_health_probe(interval_s)`` as a task so ``available`` recovers on its own after an
    outage even when no request arrives.
    """

    def __init__(
        self, config: AuthorityConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._base_url = config.url.rstrip("/")
        self._clock = clock
        self._breaker = CircuitBreaker(
            config.breaker_failure_threshold, config.breaker_reset_s, clock
        )
        self._cache: OrderedDict[str, tuple[float, ChittyIdInfo]] = OrderedDict()
        self._listeners: list[AvailabilityListener] = []
        self._available = True
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session (idempotent)."""
        if self._session is not None:
            return
        headers = {"User-Agent": f"chittyauth/{__version__}", "Accept": "application/json"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        timeout = aiohttp.ClientTimeout(
            total=self._config.connect_timeout_s + self._config.read_timeout_s,
            sock_connect=self._config.connect_timeout_s,
            sock_read=self._config.read_timeout_s,
        )
        self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> AuthorityClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def available(self) -> bool:
        """False while the breaker is not closed, i.e. the authority is considered down."""
        return self._available

    @property
    def circuit_state(self) -> CircuitState:
        """The breaker's state, for metrics and tests."""
        return self._breaker.state

    def add_listener(self, callback: AvailabilityListener) -> Callable[[], None]:
        """Call ``callback(available)`` on every availability change; returns an unsubscribe."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    async def mint(
        self,
        entity: str,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Ask the authority for a new ChittyID.

        Returns:
            The new ChittyID, already checked against the accepted formats.

        Raises:
            InvalidRequest: the entity type is unknown, or the authority refused the request (4xx).
            Unavailable: the authority cannot be reached or answered nonsense.
        """
        body: dict[str, Any] = {"entity": check_entity(entity)}
        if name is not None:
            body["name"] = name
        if metadata is not None:
            body["metadata"] = dict(metadata)

        def interpret(status: int, answer: dict[str, Any] | None) -> str:
            if 400 <= status < 500:
                raise InvalidRequest(
                    f"the ChittyID authority refused to mint (HTTP {status})",
                    reason="AUTHORITY_REFUSED_MINT",
                )
            chitty_id = answer.get("chittyId") if answer is not None else None
            if not isinstance(chitty_id, str) or answer is None:
                raise _AuthorityFailure("mint answer without a chittyId")
            if answer.get("entity", entity) != entity:
                raise _AuthorityFailure("mint answer for another entity type")
            try:
                check_format(chitty_id, allow_legacy=self._config.allow_legacy_ids)
            except InvalidRequest:
                raise _AuthorityFailure("minted ChittyID is malformed") from None
            return chitty_id

        chitty_id = await self._call("POST", "/mint", interpret, json_body=body)
        logger.info("chittyid minted", extra={"chitty_id": chitty_id, "entity": entity})
        return chitty_id

    async def validate(self, chitty_id: str) -> ChittyIdInfo:
        """The authority's verdict on ``chitty_id``, after a format pre-check.

        A positive verdict is cached for ``cache_ttl_s``; negative ones are not, so an ID minted
        a moment ago is never refused from cache. The cache answers only while the breaker is
        closed, and any failed call or health probe empties it: an authority known to be down
        (or just come back) is never vouched for from memory, so every caller fails closed.

        Raises:
            InvalidRequest: reason ``INVALID_CHITTY_ID``; no network call was made.
            Unavailable: the authority cannot be reached or answered nonsense.
        """
        check_format(chitty_id, allow_legacy=self._config.allow_legacy_ids)
        cached = self._cached(chitty_id) if self._breaker.state == "closed" else None
        if cached is not None:
            return cached

        def interpret(status: int, answer: dict[str, Any] | None) -> ChittyIdInfo:
            if status in (400, 404, 422):
                # The authority refuses the ID itself: a verdict, and a negative one.
                return ChittyIdInfo(valid=False, chitty_id=chitty_id, entity=None)
            info = _parse_validation(answer, chitty_id) if status == 200 else None
            if info is None:
                raise _AuthorityFailure(f"HTTP {status} is not a verdict")
            return info

        info = await self._call("GET", f"/validate/{quote(chitty_id, safe='')}", interpret)
        if info.valid:
            self._remember(info)
        return info

    async def check_health(self) -> bool:
        """Probe ``GET /health``, bypassing the breaker; updates ``available``. Never raises."""
        session = self._require_session()
        try:
            async with session.get(f"{self._base_url}/health", allow_redirects=False) as response:
                await response.content.read(_MAX_ANSWER_BYTES)
                healthy = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("authority health probe failed", extra={"error": type(exc).__name__})
            healthy = False
        if healthy:
            self._breaker.record_success()
        else:
            self._record_failure()
        self._publish()
        return healthy

    async def run_health_probe(self, interval_s: float) -> None:
        """Probe health every ``interval_s`` seconds until cancelled."""
        while True:
            await self.check_health()
            await asyncio.sleep(interval_s)

    async def _call(
        self,
        method: str,
        path: str,
        interpret: Callable[[int, dict[str, Any] | None], _T],
        *,
        json_body: Mapping[str, Any] | None = None,
    ) -> _T:
        """One request through the breaker, its answer read by ``interpret(status, json)``.

        ``interpret`` sees 2xx and 4xx answers (the JSON object, or None if the body is not
        one) and raises ``_AuthorityFailure`` for nonsense. Network failures, timeouts, 5xx,
        redirects and nonsense count against the breaker; anything else, including a verdict
        ``interpret`` raises as a ``DomainError``, counts for it.
        """
        session = self._require_session()
        trial = self._breaker.state == "half_open"
        if not self._breaker.acquire():
            raise Unavailable(
                "the ChittyID authority is unavailable",
                reason="AUTHORITY_UNAVAILABLE",
                retry_after=self._breaker.retry_after(),
            )
        try:
            async with session.request(
                method, f"{self._base_url}{path}", json=json_body, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(_MAX_ANSWER_BYTES + 1)
                status = resp.status
            if status in (401, 403, 429):
                raise self._refused(status)
            if not (200 <= status < 300 or 400 <= status < 500):
                raise _AuthorityFailure(f"HTTP {status}")
            result = interpret(status, _json_object(raw))
        except (aiohttp.ClientError, TimeoutError, _AuthorityFailure) as exc:
            self._record_failure()
            logger.warning(
                "authority call failed",
                extra={"path": path.split("/")[1], "error": type(exc).__name__, "detail": str(exc)},
            )
            raise Unavailable(
                "the ChittyID authority is unavailable", reason="AUTHORITY_UNAVAILABLE"
            ) from None
        except DomainError:
            self._breaker.record_success()
            raise
        except BaseException:
            # Cancelled, or a bug of ours: no verdict on the authority, but a trial must not
            # hold the half-open slot forever.
            if trial:
                self._breaker.abandon()
            raise
        else:
            self._breaker.record_success()
            return result
        finally:
            self._publish()

    def _record_failure(self) -> None:
        # What the authority vouched for before it failed is not vouched for after: a cached
        # verdict must not outlive a failed call or probe (an ID may be disowned meanwhile).
        self._cache.clear()
        self._breaker.record_failure()

    def _refused(self, status: int) -> Unavailable:
        # 401/403 mean our credentials are wrong and 429 that we are throttled: not the
        # caller's fault, and nothing we may work around, but the authority is up.
        logger.error("authority refused our request", extra={"status": status})
        return Unavailable("the ChittyID authority is unavailable", reason="AUTHORITY_REFUSED")

    def _cached(self, chitty_id: str) -> ChittyIdInfo | None:
        entry = self._cache.get(chitty_id)
        if entry is None:
            return None
        expires_at, info = entry
        if self._clock() >= expires_at:
            del self._cache[chitty_id]
            return None
        return info

    def _remember(self, info: ChittyIdInfo) -> None:
        if self._config.cache_ttl_s <= 0:
            return
        self._cache[info.chitty_id] = (self._clock() + self._config.cache_ttl_s, info)
        self._cache.move_to_end(info.chitty_id)
        while len(self._cache) > _CACHE_MAX_ENTRIES:
            self._cache.popitem(last=False)

    def _publish(self) -> None:
        available = self._breaker.state == "closed"
        if available == self._available:
            return
        self._available = available
        logger.warning("chittyid authority %s", "available" if available else "unavailable")
        for listener in list(self._listeners):
            try:
                listener(available)
            except Exception:
                # A faulty listener must not break the call that noticed the change.
                logger.exception("availability listener failed")

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AuthorityClient.start() has not been awaited")
        return self._session


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > _MAX_ANSWER_BYTES:
        return None
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _parse_validation(answer: Mapping[str, Any] | None, chitty_id: str) -> ChittyIdInfo | None:
    if answer is None:
        return None
    valid = answer.get("valid")
    entity = answer.get("entity")
    echoed = answer.get("chittyId", chitty_id)
    # An answer about another ID is not an answer about this one.
    if not isinstance(valid, bool) or echoed != chitty_id:
        return None
    if entity is not None and not isinstance(entity, str):
        return None
    return ChittyIdInfo(valid=valid, chitty_id=chitty_id, entity=entity)
