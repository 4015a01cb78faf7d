"""The dev authority process: persistence across restarts, the bearer key, its HTTP API."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from chittyauth.config import AuthorityConfig, PortalConfig
from chittyauth.domain.chittyid import check_format, official_checksum_ok
from chittyauth.domain.errors import Unavailable
from chittyauth.identity.access import AccessVerifier
from chittyauth.identity.authority import AuthorityClient
from tests.support.devauthority import DevAuthority

API_KEY = "dev-authority-test-key-9f8e7d"


async def test_restart_keeps_minted_ids_and_the_key(dev_authority: DevAuthority) -> None:
    config = AuthorityConfig(url=dev_authority.authority_url)
    async with AuthorityClient(config) as client:
        minted = [await client.mint("PEO"), await client.mint("PROP")]
    certs_before = await dev_authority.certs()
    assertion = await dev_authority.mint_assertion("alice@example.com")
    port = dev_authority.port

    assert await dev_authority.stop() == 0  # SIGTERM is a clean stop
    await dev_authority.start()

    assert dev_authority.port == port
    assert sorted(await dev_authority.minted_ids()) == sorted(minted)
    assert (await dev_authority.certs())["keys"] == certs_before["keys"]
    async with AuthorityClient(config) as client:
        verdicts = [await client.validate(chitty_id) for chitty_id in minted]
    assert [(v.valid, v.entity) for v in verdicts] == [(True, "PEO"), (True, "PROP")]
    portal = PortalConfig(team_domain=dev_authority.base_url)
    async with AccessVerifier(portal) as verifier:
        assert (await verifier.verify(assertion)).email == "alice@example.com"


async def test_data_file_is_private_json(dev_authority: DevAuthority) -> None:
    async with AuthorityClient(AuthorityConfig(url=dev_authority.authority_url)) as client:
        chitty_id = await client.mint("INFO")

    document = json.loads(dev_authority.data_file.read_text())

    assert document["minted"][chitty_id]["entity"] == "INFO"
    assert stat.S_IMODE(dev_authority.data_file.stat().st_mode) == 0o600
    assert not [p for p in dev_authority.data_file.parent.iterdir() if p.name.startswith(".")]


async def test_minted_ids_are_official_with_their_check_character(
    dev_authority: DevAuthority,
) -> None:
    body = {"requests": [{"entity": "ACTOR"}, {"entity": "CONTEXT", "name": "meeting"}]}

    answer = await dev_authority.request("POST", "/v1/mint/batch", json=body)

    ids = [item["chittyId"] for item in answer["chittyIds"]]
    assert [item["entity"] for item in answer["chittyIds"]] == ["ACTOR", "CONTEXT"]
    for chitty_id in ids:
        check_format(chitty_id, allow_legacy=False)
        assert official_checksum_ok(chitty_id)
    assert sorted(await dev_authority.minted_ids()) == sorted(ids)


async def test_api_refuses_bad_requests(dev_authority: DevAuthority) -> None:
    async with aiohttp.ClientSession(base_url=dev_authority.base_url) as session:
        async with session.post("/v1/mint", json={"entity": "USER"}) as response:
            assert response.status == 400
            assert "entity" in (await response.json())["error"]
        async with session.post("/v1/mint", data="{") as response:
            assert response.status == 400
        async with session.post("/v1/mint/batch", json={"requests": []}) as response:
            assert response.status == 400
        async with session.post("/dev/access/assertion", json={"email": "x"}) as response:
            assert response.status == 400
        async with session.get("/v1/validate/not-an-id") as response:
            assert response.status == 200
            assert (await response.json())["valid"] is False
    assert await dev_authority.minted_ids() == []


async def test_bearer_key_is_enforced_when_configured(tmp_path: Path) -> None:
    async with DevAuthority(tmp_path, api_key=API_KEY) as authority:
        async with aiohttp.ClientSession(base_url=authority.base_url) as session:
            async with session.post("/v1/mint", json={"entity": "PEO"}) as response:
                assert response.status == 401
            wrong = {"Authorization": "Bearer not-the-key"}
            async with session.post("/v1/mint", json={"entity": "PEO"}, headers=wrong) as resp:
                assert resp.status == 401
            async with session.post("/dev/access/assertion", json={"email": "a@b.c"}) as resp:
                assert resp.status == 401
            async with session.get("/v1/validate/CH-A-USA-0042-P-25-Q-2") as response:
                assert response.status == 401
            # Liveness and public keys stay open, as Cloudflare's do.
            async with session.get("/v1/health") as response:
                assert response.status == 200
            async with session.get("/cdn-cgi/access/certs") as response:
                assert response.status == 200

        keyed = AuthorityConfig(url=authority.authority_url, api_key=API_KEY)
        async with AuthorityClient(keyed) as client:
            chitty_id = await client.mint("AUTH")
            assert (await client.validate(chitty_id)).valid

        unkeyed = AuthorityConfig(url=authority.authority_url, api_key="wrong")
        async with AuthorityClient(unkeyed) as client:
            with pytest.raises(Unavailable) as caught:
                await client.mint("AUTH")
            assert caught.value.reason == "AUTHORITY_REFUSED"
            assert client.available  # a refusal is not an outage

        assert await authority.minted_ids() == [chitty_id]
    assert API_KEY not in authority.log_file.read_text()


async def test_busy_port_exits_with_an_error(dev_authority: DevAuthority, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chittyauth.devauthority",
        "--port",
        str(dev_authority.port),
        "--data-file",
        str(tmp_path / "other.json"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    lines = [json.loads(line) for line in stderr.decode().splitlines()]
    assert lines[-1]["msg"] == "dev authority failed to start"
    assert lines[-1]["level"] == "error"
