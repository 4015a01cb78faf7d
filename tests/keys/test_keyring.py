"""The key ring's life cycle over a real database: creation, rotation, schedule, deletion."""

from __future__ import annotations

import asyncio
from pathlib import Path

import jwt
import pytest

from chittyauth.clock import FakeClock
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import InvalidRequest, PermissionDenied, Unavailable
from chittyauth.domain.keys import CHANGE_KIND, CHANGE_PREFIX, KeyRing
from chittyauth.domain.principal import Principal
from tests.keys.helpers import audit_events, db_rows, keys_config, open_ring

DAY = 86400
# Longest token lifetime in the default config (mcp_server, 7 days) plus the 30 s leeway.
RETIRED_LIFE = 7 * DAY + 30


def sign(ring: KeyRing, claims: dict[str, object] | None = None) -> str:
    key = ring.signer()
    return jwt.encode(
        claims or {"sub": "s"}, key.key, algorithm=key.algorithm, headers={"kid": key.kid}
    )


def verifies(ring: KeyRing, token: str) -> bool:
    kid = jwt.get_unverified_header(token)["kid"]
    key = ring.verifier(kid)
    if key is None:
        return False
    jwt.decode(token, key.key, algorithms=[key.algorithm])
    return True


async def test_first_start_creates_an_active_and_a_next_key(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (store, ring):
        infos = {info.state: info for info in ring.infos()}
        assert set(infos) == {"active", "next"}
        assert infos["active"].algorithm == infos["next"].algorithm == "ES256"
        assert infos["active"].activate_time == clock.now()
        # The next key may sign after a full rotation interval (longer than publish-ahead).
        assert infos["next"].activate_time == clock.now() + config.keys.rotation_interval_s
        assert ring.signer().kid == infos["active"].kid
        created = await audit_events(store, "key.created")
        assert sorted(e.subject for e in created) == sorted(i.kid for i in infos.values())
        assert {e.actor for e in created} == {"system"}
        changes = await store.changes_after(0)
        assert {c.kind for c in changes} == {CHANGE_KIND}
        # A second start finds both keys and makes nothing new.
        assert await ring.ensure_keys() is False
    async with open_ring(config, clock) as (store, again):
        assert again.signer().kid == infos["active"].kid
        assert len(await audit_events(store, "key.created")) == 2
    assert db_rows(config.store.path) == {
        infos["active"].kid: ("active", "ES256"),
        infos["next"].kid: ("next", "ES256"),
    }


async def test_no_active_key_fails_closed(tmp_path: Path) -> None:
    async with open_ring(keys_config(tmp_path / "k.db"), FakeClock(), ensure=False) as (_, ring):
        with pytest.raises(Unavailable, match="no active signing key") as caught:
            ring.signer()
        assert caught.value.reason == "NO_SIGNING_KEY"
        assert ring.jwks() == []


async def test_on_demand_rotation_moves_every_state(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (store, ring):
        before = {info.state: info.kid for info in ring.infos()}
        clock.advance(60)
        rotation = await ring.rotate(actor="admin-1", request_id="req-1")

        assert rotation.active.kid == before["next"]
        assert rotation.active.activate_time == clock.now()
        assert rotation.retired is not None
        assert rotation.retired.kid == before["active"]
        assert rotation.retired.retire_time == clock.now()
        assert rotation.retired.delete_time == clock.now() + RETIRED_LIFE
        assert rotation.next.kid not in before.values()
        assert ring.signer().kid == before["next"]
        assert db_rows(config.store.path) == {
            before["active"]: ("retired", "ES256"),
            before["next"]: ("active", "ES256"),
            rotation.next.kid: ("next", "ES256"),
        }
        [rotated] = await audit_events(store, "key.rotated")
        assert (rotated.actor, rotated.subject, rotated.request_id) == (
            "admin-1",
            before["next"],
            "req-1",
        )
        assert rotated.attributes["retired_kid"] == before["active"]
        assert rotated.attributes["next_kid"] == rotation.next.kid
        assert rotated.attributes["trigger"] == "on_demand"


async def test_rotation_of_an_unused_algorithm_starts_its_ring(tmp_path: Path) -> None:
    async with open_ring(keys_config(tmp_path / "k.db"), FakeClock()) as (_, ring):
        rotation = await ring.rotate("HS256")
        assert rotation.retired is None
        assert ring.signer("HS256").kid == rotation.active.kid
        # The signing algorithm is untouched and HS256 secrets are never published.
        assert ring.signer().algorithm == "ES256"
        assert {jwk["alg"] for jwk in ring.jwks()} == {"ES256"}
        with pytest.raises(InvalidRequest) as caught:
            await ring.rotate("none")
        assert caught.value.reason == "UNSUPPORTED_ALGORITHM"


async def test_scheduled_rotation_publishes_next_before_it_signs(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db", rotation_interval_s=10 * DAY, publish_ahead_s=DAY)
    async with open_ring(config, clock) as (store, ring):
        first = ring.signer().kid
        clock.advance(10 * DAY - 1)
        await ring.maintain()
        assert ring.signer().kid == first  # not due yet
        cached_jwks = {jwk["kid"] for jwk in ring.jwks()}  # what a verifier caches now

        clock.advance(1)
        await ring.maintain()
        signing = ring.signer().kid
        assert signing != first
        assert signing in cached_jwks  # a verifier with the old JWKS knows the new kid
        token = sign(ring)
        assert verifies(ring, token)
        [rotated] = await audit_events(store, "key.rotated")
        assert (rotated.actor, rotated.attributes["trigger"]) == ("system", "scheduled")


async def test_a_next_key_waits_for_publish_ahead_even_when_the_interval_is_shorter(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db", rotation_interval_s=3600, publish_ahead_s=7200)
    async with open_ring(config, clock) as (_, ring):
        first = ring.signer().kid
        upcoming = next(i for i in ring.infos() if i.state == "next")
        assert upcoming.activate_time == clock.now() + 7200
        clock.advance(3600)
        await ring.maintain()
        assert ring.signer().kid == first
        clock.advance(3600)
        await ring.maintain()
        assert ring.signer().kid == upcoming.kid


async def test_retired_key_verifies_until_delete_time_then_disappears(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (store, ring):
        old = ring.signer().kid
        token = sign(ring)
        await ring.rotate()
        assert verifies(ring, token)
        assert old in {jwk["kid"] for jwk in ring.jwks()}

        clock.advance(RETIRED_LIFE - 1)
        assert await ring.purge_expired() == 0
        assert verifies(ring, token)

        clock.advance(1)
        await ring.maintain()
        assert ring.verifier(old) is None
        assert old not in {jwk["kid"] for jwk in ring.jwks()}
        assert old not in db_rows(config.store.path)
        [deleted] = await audit_events(store, "key.deleted")
        assert (deleted.subject, deleted.actor, deleted.outcome) == (old, "system", "success")


async def test_another_process_learns_of_a_rotation_from_the_change_feed(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (_, ring_a), open_ring(config, clock) as (b, ring_b):
        feed = ChangeFeed(b)
        feed.subscribe((CHANGE_PREFIX,), ring_b.on_changes)
        await feed.start(await b.last_change_seq())
        try:
            token = sign(ring_a)
            rotation = await ring_a.rotate()
            assert ring_b.signer().kid != rotation.active.kid  # not yet told
            await feed.poll_once()
            assert ring_b.signer().kid == rotation.active.kid
            assert rotation.next.kid in {jwk["kid"] for jwk in ring_b.jwks()}
            assert verifies(ring_b, token)
        finally:
            await feed.stop()


async def test_two_schedulers_rotate_once(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (store, ring_a), open_ring(config, clock) as (_, ring_b):
        clock.advance(config.keys.rotation_interval_s)
        # Both find the rotation due before either commits; the second must notice, inside its
        # own transaction, that the ring was rotated meanwhile.
        await asyncio.gather(ring_a.maintain(), ring_b.maintain())
        assert len(await audit_events(store, "key.rotated")) == 1
        assert len(db_rows(config.store.path)) == 3
        assert ring_a.signer().kid == ring_b.signer().kid


async def test_run_schedule_rotates_when_the_clock_says_so(tmp_path: Path) -> None:
    clock = FakeClock()
    config = keys_config(tmp_path / "k.db")
    async with open_ring(config, clock) as (_, ring):
        first = ring.signer().kid
        task = asyncio.create_task(ring.run_schedule(check_interval_s=0.01))
        try:
            await asyncio.sleep(0.05)
            assert ring.signer().kid == first
            clock.advance(config.keys.rotation_interval_s)
            async with asyncio.timeout(5):
                while ring.signer().kid == first:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_refused_rotation_is_audited(tmp_path: Path) -> None:
    async with open_ring(keys_config(tmp_path / "k.db"), FakeClock()) as (store, ring):
        before = ring.signer().kid
        reader = Principal(subject="user-9", scopes=frozenset({"mcp:read"}))
        with pytest.raises(PermissionDenied):
            await ring.rotate_for(reader, None, request_id="req-9")
        assert ring.signer().kid == before
        [failure] = await audit_events(store, "key.rotated")
        assert (failure.actor, failure.outcome, failure.request_id) == (
            "user-9",
            "failure",
            "req-9",
        )
        assert failure.attributes["reason"] == "INSUFFICIENT_SCOPE"

        key_admin = Principal(subject="ops-1", scopes=frozenset({"keys:admin"}))
        rotation = await ring.rotate_for(key_admin, None, request_id="req-10")
        assert rotation.retired is not None
        assert rotation.retired.kid == before
