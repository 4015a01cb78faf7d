"""AuthorityClient against a real dev-authority subprocess."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from chittyauth.config import AuthorityConfig
from chittyauth.domain.errors import InvalidRequest, Unavailable
from chittyauth.identity.authority import (
    AuthorityClient,
    ChittyIdInfo,
    CircuitBreaker,
    CircuitState,
)
from tests.support.devauthority import DevAuthority

THRESHOLD = 2
RESET_S = 10.0
CACHE_TTL_S = 60.0
# Well-formed (official shape, good check character) but never minted by anyone.
UNKNOWN_ID = "ZZ-Z-ZZZ-0000-P-00-Z-F"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config_for(url: str) -> AuthorityConfig:
    return AuthorityConfig(
        url=url,
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
        cache_ttl_s=CACHE_TTL_S,
        breaker_failure_threshold=THRESHOLD,
        breaker_reset_s=RESET_S,
    )


@pytest.fixture
async def client(dev_authority: DevAuthority, clock: FakeClock) -> AsyncIterator[AuthorityClient]:
    async with AuthorityClient(config_for(dev_authority.authority_url), clock=clock) as client:
        yield client


def state(subject: AuthorityClient | CircuitBreaker) -> CircuitState:
    # A call, not the property, so mypy does not narrow it from one assert to the next.
    return subject.circuit_state if isinstance(subject, AuthorityClient) else subject.state


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_minted_id_validates(client: AuthorityClient, dev_authority: DevAuthority) -> None:
    chitty_id = await client.mint("PEO", name="Alice", metadata={"source": "test"})

    info = await client.validate(chitty_id)

    assert info == ChittyIdInfo(valid=True, chitty_id=chitty_id, entity="PEO")
    assert await dev_authority.minted_ids() == [chitty_id]


async def test_unknown_well_formed_id_is_not_valid(client: AuthorityClient) -> None:
    info = await client.validate(UNKNOWN_ID)

    assert info == ChittyIdInfo(valid=False, chitty_id=UNKNOWN_ID, entity=None)
    assert client.available


async def test_malformed_id_is_refused_without_a_network_call(clock: FakeClock) -> None:
    # Nothing listens here: any request would fail and count against the breaker.
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with AuthorityClient(config_for(url), clock=clock) as client:
        for _ in range(THRESHOLD + 1):
            with pytest.raises(InvalidRequest) as caught:
                await client.validate("CHITTY-PEO-USER123-ABC")
            assert caught.value.reason == "INVALID_CHITTY_ID"
        assert state(client) == "closed"
        assert client.available


async def test_unknown_entity_is_refused_without_a_network_call(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await client.mint("USER")

    assert caught.value.reason == "INVALID_ENTITY_TYPE"
    assert await dev_authority.minted_ids() == []


async def test_stopped_authority_fails_closed_and_recovers_by_health_probe(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    changes: list[bool] = []
    client.add_listener(changes.append)
    minted = await client.mint("PLACE")
    await dev_authority.stop()

    for _ in range(THRESHOLD):
        with pytest.raises(Unavailable) as caught:
            await client.mint("PEO")
        assert caught.value.reason == "AUTHORITY_UNAVAILABLE"
        assert caught.value.grpc_code == "UNAVAILABLE"
    assert state(client) == "open"
    assert not client.available
    assert changes == [False]

    # Open: refused at once, with a hint of when to come back.
    with pytest.raises(Unavailable) as fast:
        await client.validate(UNKNOWN_ID)
    assert fast.value.retry_after == pytest.approx(RESET_S)

    await dev_authority.start()
    assert await client.check_health()
    assert client.available
    assert state(client) == "closed"
    assert changes == [False, True]
    info = await client.validate(minted)
    assert info.valid
    assert info.entity == "PLACE"


async def test_half_open_trial_closes_the_breaker(
    client: AuthorityClient, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    changes: list[bool] = []
    client.add_listener(changes.append)
    await dev_authority.stop()
    for _ in range(THRESHOLD):
        with pytest.raises(Unavailable):
            await client.validate(UNKNOWN_ID)
    assert state(client) == "open"

    await dev_authority.start()
    with pytest.raises(Unavailable):  # still open: the reset time has not passed
        await client.validate(UNKNOWN_ID)
    clock.advance(RESET_S)
    assert state(client) == "half_open"

    info = await client.validate(UNKNOWN_ID)

    assert not info.valid
    assert state(client) == "closed"
    assert changes == [False, True]


async def test_failed_half_open_trial_reopens_the_breaker(
    client: AuthorityClient, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    await dev_authority.stop()
    for _ in range(THRESHOLD):
        with pytest.raises(Unavailable):
            await client.validate(UNKNOWN_ID)
    clock.advance(RESET_S)
    assert state(client) == "half_open"

    with pytest.raises(Unavailable):
        await client.validate(UNKNOWN_ID)

    assert state(client) == "open"
    assert not client.available


async def test_positive_answer_is_cached_within_ttl_only(
    client: AuthorityClient, dev_authority: DevAuthority, clock: FakeClock
) -> None:
    chitty_id = await client.mint("EVNT")
    assert (await client.validate(chitty_id)).valid
    await dev_authority.stop()

    clock.advance(CACHE_TTL_S - 1)
    cached = await client.validate(chitty_id)
    assert cached == ChittyIdInfo(valid=True, chitty_id=chitty_id, entity="EVNT")
    assert state(client) == "closed"  # answered without touching the network

    clock.advance(1)
    with pytest.raises(Unavailable):
        await client.validate(chitty_id)


async def test_negative_answer_is_not_cached(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    assert not (await client.validate(UNKNOWN_ID)).valid
    await dev_authority.stop()

    with pytest.raises(Unavailable):
        await client.validate(UNKNOWN_ID)


async def test_health_probe_task_tracks_an_outage(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    changes: asyncio.Queue[bool] = asyncio.Queue()
    client.add_listener(changes.put_nowait)
    probe = asyncio.create_task(client.run_health_probe(0.05))
    try:
        await dev_authority.stop()
        assert await asyncio.wait_for(changes.get(), 10) is False
        await dev_authority.start()
        assert await asyncio.wait_for(changes.get(), 10) is True
        assert client.available
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe


async def test_removed_listener_is_not_called(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    changes: list[bool] = []
    remove = client.add_listener(changes.append)
    remove()
    await dev_authority.stop()

    for _ in range(THRESHOLD):
        assert not await client.check_health()

    assert not client.available
    assert changes == []


async def test_a_failing_listener_does_not_break_the_call(
    client: AuthorityClient, dev_authority: DevAuthority
) -> None:
    def broken(available: bool) -> None:
        raise RuntimeError("listener bug")

    seen: list[bool] = []
    client.add_listener(broken)
    client.add_listener(seen.append)
    await dev_authority.stop()

    for _ in range(THRESHOLD):
        with pytest.raises(Unavailable):
            await client.validate(UNKNOWN_ID)

    assert seen == [False]


async def test_calls_before_start_are_a_programming_error(dev_authority: DevAuthority) -> None:
    client = AuthorityClient(config_for(dev_authority.authority_url))

    with pytest.raises(RuntimeError, match="start"):
        await client.validate(UNKNOWN_ID)


class StubAuthority:
    """A misbehaving stand-in for an external authority: answers whatever the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.requests = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._answer)
        self.runner = web.AppRunner(self.app, access_log=None)

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=self.status, body=self.body, content_type="application/json")

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"


@pytest.fixture
async def stub() -> AsyncIterator[StubAuthority]:
    authority = StubAuthority()
    try:
        yield authority
    finally:
        await authority.runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"valid": true}'),
        (503, b""),
        (200, b"not json"),
        (200, b"[true]"),
        (200, b'{"valid": "yes"}'),
        (200, b'{"valid": true, "chittyId": "AA-A-AAA-0000-P-00-A-0"}'),  # another ID
        (302, b""),
    ],
)
async def test_nonsense_from_the_authority_is_unavailable(
    stub: StubAuthority, clock: FakeClock, status: int, body: bytes
) -> None:
    stub.status, stub.body = status, body
    async with AuthorityClient(config_for(await stub.start()), clock=clock) as client:
        for _ in range(THRESHOLD):
            with pytest.raises(Unavailable) as caught:
                await client.validate(UNKNOWN_ID)
            assert caught.value.reason == "AUTHORITY_UNAVAILABLE"
        with pytest.raises(Unavailable):
            await client.validate(UNKNOWN_ID)

        assert state(client) == "open"
        assert stub.requests == THRESHOLD  # the last call failed fast


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_authority_refusing_the_id_means_not_valid(
    stub: StubAuthority, clock: FakeClock, status: int
) -> None:
    stub.status, stub.body = status, b'{"error": "no such id"}'
    async with AuthorityClient(config_for(await stub.start()), clock=clock) as client:
        info = await client.validate(UNKNOWN_ID)

        assert not info.valid
        assert state(client) == "closed"


async def test_authority_refusing_a_mint_is_invalid_request(
    stub: StubAuthority, clock: FakeClock
) -> None:
    stub.status, stub.body = 400, b'{"error": "bad name"}'
    async with AuthorityClient(config_for(await stub.start()), clock=clock) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.mint("PEO", name="x")

        assert caught.value.reason == "AUTHORITY_REFUSED_MINT"
        assert client.available


async def test_malformed_minted_id_is_unavailable(stub: StubAuthority, clock: FakeClock) -> None:
    stub.body = b'{"chittyId": "CHITTY-PEO-X-Y", "entity": "PEO"}'  # legacy not allowed
    async with AuthorityClient(config_for(await stub.start()), clock=clock) as client:
        with pytest.raises(Unavailable):
            await client.mint("PEO")


def test_breaker_lets_one_trial_through_and_an_abandoned_trial_frees_the_slot(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker(threshold=2, reset_s=RESET_S, clock=clock)
    breaker.record_failure()
    assert breaker.acquire()  # one failure: still closed
    breaker.record_failure()
    assert state(breaker) == "open"
    assert not breaker.acquire()

    clock.advance(RESET_S)
    assert breaker.acquire()  # the trial
    assert not breaker.acquire()  # only one
    breaker.abandon()
    assert breaker.acquire()
    breaker.record_success()

    assert state(breaker) == "closed"
